//! An online course shop receiving Stripe webhooks, in one process, no setup:
//! `cargo run --example quickstart`.
//!
//! It shows what hookgate does with each delivery:
//! 1. a signed `checkout.session.completed`: the critical handlers mark the order
//!    paid, grant course access and clear the cart (in that order) before the 200;
//!    then best-effort handlers email the customer and message three admins —
//!    one channel fails twice then succeeds, one always fails and ends in the
//!    dead letter;
//! 2. the same delivery again: 200 duplicate, nothing runs twice;
//! 3. a forged delivery: 401, nothing runs;
//! 4. a delivery whose critical handler fails transiently: 500 (Stripe retries),
//!    and the retry succeeds.
//!
//! Retry delays are shortened so it finishes in about a second.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hookgate::{
    handler_fn, testing, Event, Handler, HandlerError, Headers, MemoryDeadLetter, MemoryStore,
    Pipeline, Registry, RetryPolicy, Stripe,
};
use time::OffsetDateTime;

const SECRET: &str = "whsec_course_shop_demo";

/// The shop's own data: what the critical handlers change.
#[derive(Default)]
struct Shop {
    paid_orders: Mutex<HashSet<String>>,
    course_access: Mutex<HashMap<String, Vec<String>>>,
    carts: Mutex<HashMap<String, Vec<String>>>,
    /// How many more times the course service should time out (step 4).
    access_outages: AtomicU32,
}

/// The fields of a Checkout Session the handlers need.
#[derive(serde::Deserialize)]
struct Checkout {
    data: CheckoutData,
}
#[derive(serde::Deserialize)]
struct CheckoutData {
    object: Session,
}
#[derive(serde::Deserialize)]
struct Session {
    client_reference_id: String,
    customer_email: String,
    metadata: SessionMetadata,
}
#[derive(serde::Deserialize)]
struct SessionMetadata {
    course: String,
}

fn session(event: &Event) -> Result<Session, HandlerError> {
    Ok(event.parse::<Checkout>()?.data.object)
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Unavailable(&'static str);

impl Shop {
    fn mark_order_paid(&self, session: Session) -> Result<(), HandlerError> {
        let order = session.client_reference_id;
        println!("    [critical] order {order} marked paid");
        self.paid_orders.lock().unwrap().insert(order);
        Ok(())
    }

    fn grant_course_access(&self, session: Session) -> Result<(), HandlerError> {
        let outage = self
            .access_outages
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if outage {
            println!("    [critical] course service timed out");
            return Err(HandlerError::transient(Unavailable(
                "course service timed out",
            )));
        }
        println!(
            "    [critical] {} can now watch {:?}",
            session.customer_email, session.metadata.course
        );
        self.course_access
            .lock()
            .unwrap()
            .entry(session.customer_email)
            .or_default()
            .push(session.metadata.course);
        Ok(())
    }

    fn clear_cart(&self, session: Session) -> Result<(), HandlerError> {
        let email = session.customer_email;
        println!("    [critical] cart of {email} cleared");
        self.carts.lock().unwrap().remove(&email);
        Ok(())
    }
}

/// A handler that runs one step of the shop on the event's checkout session.
fn shop_step(
    shop: &Arc<Shop>,
    step: fn(&Shop, Session) -> Result<(), HandlerError>,
) -> impl Handler + 'static {
    let shop = shop.clone();
    handler_fn(move |event| {
        let shop = shop.clone();
        async move { step(&shop, session(&event)?) }
    })
}

fn registry(shop: &Arc<Shop>) -> Registry {
    let mut registry = Registry::new();
    let on = "checkout.session.completed";

    registry
        .critical(
            "stripe",
            on,
            "mark_order_paid",
            shop_step(shop, Shop::mark_order_paid),
        )
        .critical(
            "stripe",
            on,
            "grant_course_access",
            shop_step(shop, Shop::grant_course_access),
        )
        .critical(
            "stripe",
            on,
            "clear_cart",
            shop_step(shop, Shop::clear_cart),
        );

    registry.best_effort(
        "stripe",
        on,
        "email_customer",
        handler_fn(|event| async move {
            let session = session(&event)?;
            println!(
                "    [best-effort] emailed {}: \"Welcome to {}\"",
                session.customer_email, session.metadata.course
            );
            Ok(())
        }),
    );

    registry.best_effort(
        "stripe",
        on,
        "notify_admin_chat",
        handler_fn(|event| async move {
            println!("    [best-effort] admin chat: new sale ({})", event.id());
            Ok(())
        }),
    );

    // Attempts per event: the SMS gateway is busy for the first two of each.
    let sms_calls: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    registry.best_effort(
        "stripe",
        on,
        "notify_admin_sms",
        handler_fn(move |event| {
            let calls = sms_calls.clone();
            async move {
                let call = {
                    let mut calls = calls.lock().unwrap();
                    let call = calls.entry(event.id().to_owned()).or_default();
                    *call += 1;
                    *call
                };
                if call <= 2 {
                    println!(
                        "    [best-effort] admin SMS for {} failed (attempt {call}), will retry",
                        event.id()
                    );
                    return Err(HandlerError::transient(Unavailable("SMS gateway busy")));
                }
                println!(
                    "    [best-effort] admin SMS sent for {} (attempt {call})",
                    event.id()
                );
                Ok(())
            }
        }),
    );

    registry.best_effort(
        "stripe",
        on,
        "notify_admin_pager",
        handler_fn(|event| async move {
            println!("    [best-effort] admin pager for {} failed", event.id());
            Err(HandlerError::transient(Unavailable(
                "pager service is down",
            )))
        }),
    );
    registry
}

fn checkout(event_id: &str, order: &str, email: &str, course: &str) -> String {
    format!(
        r#"{{"id":"{event_id}","object":"event","type":"checkout.session.completed","created":{created},"data":{{"object":{{"id":"cs_{order}","client_reference_id":"{order}","customer_email":"{email}","metadata":{{"course":"{course}"}}}}}}}}"#,
        created = OffsetDateTime::now_utc().unix_timestamp()
    )
}

fn signed(body: &str, secret: &str) -> Headers {
    Headers::from_pairs(testing::stripe_headers(
        secret,
        body.as_bytes(),
        OffsetDateTime::now_utc(),
    ))
}

async fn deliver(pipeline: &Pipeline, title: &str, body: &str, headers: &Headers) {
    println!("\n→ {title}");
    let outcome = pipeline.handle(body.to_owned(), headers).await;
    println!(
        "  ← {} {:?} ({}; event {})",
        outcome.status(),
        outcome.body(),
        outcome.kind.name(),
        outcome.event_id.as_deref().unwrap_or("-"),
    );
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let shop = Arc::new(Shop::default());
    shop.carts
        .lock()
        .unwrap()
        .insert("ada@example.com".into(), vec!["rust-async".into()]);
    let dead_letter = MemoryDeadLetter::new();
    // Plain settings on the default; `build` refuses a policy that cannot work.
    let mut retry = RetryPolicy::default();
    retry.max_attempts = 4;
    retry.initial_backoff = Duration::from_millis(50);
    let pipeline = Pipeline::builder()
        .verifier(Stripe::builder(SECRET).build()?)
        .store(MemoryStore::new())
        .registry(registry(&shop))
        .retry_policy(retry)
        .memory_dead_letter(dead_letter.clone())
        .build()?;

    let first = checkout(
        "evt_1001",
        "ord_1001",
        "ada@example.com",
        "Async Rust in Practice",
    );
    let headers = signed(&first, SECRET);
    deliver(
        &pipeline,
        "1. Stripe delivers checkout.session.completed",
        &first,
        &headers,
    )
    .await;
    // Let the best-effort handlers start before the next delivery, for a readable transcript.
    tokio::time::sleep(Duration::from_millis(20)).await;

    deliver(
        &pipeline,
        "2. Stripe sends the same delivery again",
        &first,
        &headers,
    )
    .await;

    let forged = signed(&first, "whsec_not_the_secret");
    deliver(
        &pipeline,
        "3. Someone posts a forged delivery",
        &first,
        &forged,
    )
    .await;

    shop.access_outages.store(1, Ordering::SeqCst);
    let second = checkout(
        "evt_1002",
        "ord_1002",
        "grace@example.com",
        "Webhooks Done Right",
    );
    let headers = signed(&second, SECRET);
    deliver(
        &pipeline,
        "4. A checkout while the course service is down",
        &second,
        &headers,
    )
    .await;
    let retry = signed(&second, SECRET); // Stripe re-signs each retry with a new timestamp
    deliver(
        &pipeline,
        "4. Stripe retries it (the chain runs again from the start, so handlers are idempotent)",
        &second,
        &retry,
    )
    .await;

    println!("\n… waiting for best-effort work (retries back off 50 ms, 100 ms, 200 ms)");
    let report = pipeline.shutdown(Duration::from_secs(5)).await;
    println!("  drained: {}", report.drained);

    println!("\nDead letter:");
    for entry in dead_letter.entries() {
        let error = entry
            .error
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        println!(
            "  {} {} handler={} attempts={} reason={:?} error={error:?}",
            entry.provider(),
            entry.event_id(),
            entry.handler,
            entry.attempts,
            entry.reason,
        );
    }

    let stats = pipeline.stats();
    println!("\nShop state:");
    println!(
        "  paid orders: {:?}",
        sorted(shop.paid_orders.lock().unwrap().iter())
    );
    println!("  course access: {:?}", shop.course_access.lock().unwrap());
    println!("  carts left: {}", shop.carts.lock().unwrap().len());
    println!("\nStats: processed={} duplicate={} unauthorized={} critical_failed={} best-effort ok={} retries={} dead-lettered={}",
        stats.processed, stats.duplicate, stats.unauthorized, stats.critical_failed,
        stats.best_effort_succeeded, stats.best_effort_retries, stats.best_effort_dead_lettered);

    // What the transcript shows, checked: each critical step ran once per order.
    assert_eq!(shop.paid_orders.lock().unwrap().len(), 2);
    assert_eq!(
        shop.course_access
            .lock()
            .unwrap()
            .values()
            .map(Vec::len)
            .sum::<usize>(),
        2
    );
    assert_eq!(dead_letter.len(), 2, "the pager failed for both orders");
    Ok(())
}

fn sorted<'a>(items: impl Iterator<Item = &'a String>) -> Vec<&'a String> {
    let mut items: Vec<_> = items.collect();
    items.sort();
    items
}
