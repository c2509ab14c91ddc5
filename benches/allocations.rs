//! Heap allocations per delivery: a counting global allocator around the
//! system one, and `Pipeline::handle` on a `MemoryStore` with one no-op
//! critical handler (the `pipeline` bench's setup) for each provider, at
//! 1 KiB and 16 KiB:
//! - `first`: a delivery seen for the first time (claimed, handled, completed);
//! - `duplicate`: the same delivery again (answered `Duplicate` by the store);
//! - `bare_hmac`: the bare HMAC-SHA256 of the same bytes, which allocates
//!   nothing, as the floor.
//!
//! Counted: calls to `alloc`/`alloc_zeroed`/`realloc` made while the pipeline
//! handles a delivery and while its outcome is dropped (the deliveries are built
//! beforehand, outside the count). The store's own growth is included, spread
//! over the deliveries; the counts are averages over `ROUNDS` deliveries,
//! rounded to two decimals.
//!
//! Run with `cargo bench --bench allocations`; it prints one line per member,
//! `allocations <provider> <size> <member> = <count> per delivery`.

mod common;
#[path = "common/deliveries.rs"]
mod deliveries;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use common::{bare_hmac, keyed, tag, SECRET};
use deliveries::{body, builder, SIZES};
use hookgate::testing::{github_headers, shopify_headers, stripe_headers};
use hookgate::{GitHub, Headers, OutcomeKind, Pipeline, Shopify, Stripe, Verifier};
use time::OffsetDateTime;

/// The system allocator, counting every allocation.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to `System`, which upholds the
// `GlobalAlloc` contract; the counter is a relaxed atomic increment.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded with the caller's pointer, layout and size.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Deliveries counted per member.
const ROUNDS: u64 = 10_000;
fn pipeline(verifier: impl Verifier + 'static) -> Pipeline {
    builder(verifier).build().unwrap()
}

/// Delivery number `n` of a provider at `len` bytes.
type Make = fn(len: usize, n: u64) -> (Bytes, Headers);

/// A provider: its name, how its pipeline is built, how its deliveries are made.
type Provider = (&'static str, fn() -> Pipeline, Make);

fn github(len: usize, n: u64) -> (Bytes, Headers) {
    let body = body(len, 0);
    let headers = Headers::from_pairs(github_headers(
        SECRET,
        &body,
        "issues",
        &format!("delivery-{n}"),
    ));
    (Bytes::from(body), headers)
}

fn shopify(len: usize, n: u64) -> (Bytes, Headers) {
    let body = body(len, 0);
    let headers = Headers::from_pairs(shopify_headers(
        SECRET,
        &body,
        "orders/paid",
        &format!("webhook-{n}"),
    ));
    (Bytes::from(body), headers)
}

fn stripe(len: usize, n: u64) -> (Bytes, Headers) {
    let body = body(len, n);
    let headers = Headers::from_pairs(stripe_headers(SECRET, &body, OffsetDateTime::now_utc()));
    (Bytes::from(body), headers)
}

/// Allocations per delivery while `pipeline` handles `deliveries` one by one
/// and their outcomes are dropped; each outcome must be `expect`.
fn count(
    rt: &tokio::runtime::Runtime,
    pipeline: &Pipeline,
    deliveries: Vec<(Bytes, Headers)>,
    expect: fn(&OutcomeKind) -> bool,
) -> f64 {
    let n = deliveries.len() as f64;
    let mut kept = Vec::with_capacity(deliveries.len());
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    rt.block_on(async {
        for (body, headers) in deliveries {
            let outcome = pipeline.handle(body, &headers).await;
            assert!(expect(&outcome.kind), "{outcome:?}");
            drop(outcome);
            // The headers were built outside the count: dropped outside it too.
            kept.push(headers);
        }
    });
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    drop(kept);
    (after - before) as f64 / n
}

fn main() {
    // `cargo bench` passes criterion's arguments (`--bench`, filters): a
    // filter that names no member of this bench skips it.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"))
        .collect();
    if !filter.is_empty() && !filter.iter().any(|f| "allocations".contains(f.as_str())) {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let providers: [Provider; 3] = [
        (
            "github",
            || pipeline(GitHub::builder(SECRET).build().unwrap()),
            github,
        ),
        (
            "shopify",
            || pipeline(Shopify::builder(SECRET).build().unwrap()),
            shopify,
        ),
        (
            "stripe",
            || pipeline(Stripe::builder(SECRET).build().unwrap()),
            stripe,
        ),
    ];
    let keyed = keyed();
    for (name, build, make) in providers {
        for (len, label) in SIZES {
            let (body, _) = make(len, 0);
            let expected = tag(&[&body]);
            let before = ALLOCATIONS.load(Ordering::Relaxed);
            for _ in 0..ROUNDS {
                assert!(bare_hmac(&keyed, &[&body], &expected));
            }
            let bare = (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / ROUNDS as f64;
            println!("allocations {name} {label} bare_hmac = {bare:.2} per delivery");

            let pipeline = build();
            // Warm up: the first deliveries size the store's tables.
            let warm: Vec<_> = (0..1_000).map(|n| make(len, 1_000_000 + n)).collect();
            count(&rt, &pipeline, warm, |kind| {
                matches!(kind, OutcomeKind::Processed { .. })
            });
            let fresh: Vec<_> = (0..ROUNDS).map(|n| make(len, n)).collect();
            let duplicates = fresh.clone();
            let first = count(&rt, &pipeline, fresh, |kind| {
                matches!(kind, OutcomeKind::Processed { .. })
            });
            println!("allocations {name} {label} first = {first:.2} per delivery");
            let duplicate = count(&rt, &pipeline, duplicates, |kind| {
                matches!(kind, OutcomeKind::Duplicate)
            });
            println!("allocations {name} {label} duplicate = {duplicate:.2} per delivery");
        }
    }
}
