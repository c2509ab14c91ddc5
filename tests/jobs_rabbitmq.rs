//! RabbitMQ jobs against the real local broker (HOOKGATE_AMQP_URL, default
//! amqp://guest:guest@127.0.0.1:5672/%2f): persistent confirmed publishes,
//! retries through the retry queue, the dead-letter exchange, and
//! once-per-key effects through cut connections, crashed workers and
//! duplicate publishes. A broker that is down fails these tests; nothing
//! skips.
#![cfg(feature = "rabbitmq")]

#[path = "common/jobs.rs"]
mod jobs_support;
#[allow(dead_code)] // the shared proxy helpers: this file uses some
#[path = "common/proxy.rs"]
mod proxy;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hookgate::jobs::rabbitmq::lapin::options::{
    BasicGetOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use hookgate::jobs::rabbitmq::lapin::types::FieldTable;
use hookgate::jobs::rabbitmq::lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use hookgate::jobs::rabbitmq::{RabbitSink, RabbitTopology, RabbitWorker};
use hookgate::jobs::{JobMessage, JobRunner, JobSink};
use hookgate::{
    handler_fn, DeadLetterReason, Event, HandlerError, MemoryDeadLetter, MemoryStore, Registry,
    RetryPolicy,
};
use jobs_support::{job, key, recording, unique, wait_for, Effects, FreezeAfterComplete};
use proxy::Proxy;

fn amqp_url() -> String {
    std::env::var("HOOKGATE_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// The URL's host:port, and the URL with it replaced by `addr`.
fn split_url() -> (String, String, String) {
    let url = amqp_url();
    let (scheme, rest) = url.split_once("://").expect("an amqp:// URL");
    let (auth, rest) = match rest.rsplit_once('@') {
        Some((auth, rest)) => (format!("{auth}@"), rest),
        None => (String::new(), rest),
    };
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let hostport = if hostport.contains(':') {
        hostport.to_owned()
    } else {
        format!("{hostport}:5672")
    };
    (format!("{scheme}://{auth}"), hostport, path.to_owned())
}

fn amqp_addr() -> SocketAddr {
    let (_, hostport, _) = split_url();
    std::net::ToSocketAddrs::to_socket_addrs(&hostport)
        .expect("resolve HOOKGATE_AMQP_URL")
        .next()
        .expect("an address for HOOKGATE_AMQP_URL")
}

fn url_via(addr: SocketAddr) -> String {
    let (head, _, path) = split_url();
    format!("{head}{addr}{path}")
}

async fn channel() -> (Connection, Channel) {
    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| {
            panic!(
                "RabbitMQ must be reachable at {} (HOOKGATE_AMQP_URL): {e}",
                amqp_addr()
            )
        });
    let channel = connection.create_channel().await.expect("a channel");
    (connection, channel)
}

/// A fresh, declared topology.
async fn topology() -> RabbitTopology {
    let topology = RabbitTopology::new(&unique("hookgate_test")).unwrap();
    let (_connection, channel) = channel().await;
    topology
        .declare(&channel)
        .await
        .expect("declare the topology");
    topology
}

async fn count(queue: &str) -> u32 {
    let (_connection, channel) = channel().await;
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("the queue exists")
        .message_count()
}

async fn remove(topology: &RabbitTopology) {
    let (_connection, channel) = channel().await;
    for queue in [
        topology.queue(),
        topology.retry_queue(),
        topology.dead_letter_queue(),
    ] {
        let _ = channel
            .queue_delete(queue.into(), QueueDeleteOptions::default())
            .await;
    }
    for exchange in [topology.exchange(), topology.dead_letter_exchange()] {
        let _ = channel
            .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
            .await;
    }
}

fn policy(max_attempts: u32) -> RetryPolicy {
    let mut policy = RetryPolicy::default();
    policy.max_attempts = max_attempts;
    policy.initial_backoff = Duration::from_millis(50);
    policy.max_backoff = Duration::from_millis(200);
    policy.attempt_timeout = Duration::from_secs(2);
    policy
}

fn runner(
    registry: &Registry,
    store: impl hookgate::IdempotencyStore + 'static,
    dead_letter: &MemoryDeadLetter,
    max_attempts: u32,
) -> JobRunner {
    JobRunner::builder(registry.clone(), store)
        .retry_policy(policy(max_attempts))
        .lease(Duration::from_secs(3))
        .busy_delay(Duration::from_millis(200))
        .dead_letter(dead_letter.clone())
        .build()
        .expect("a valid runner")
}

#[tokio::test]
async fn a_job_is_published_persistent_with_its_key_as_message_id_and_confirmed() {
    let topology = topology().await;
    let sink = RabbitSink::new(amqp_url(), &topology);
    let sent = job("evt_props", "email");
    sink.send(&sent).await.unwrap();
    let (_connection, channel) = channel().await;
    let got = channel
        .basic_get(topology.queue().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("the job is in the work queue");
    let properties = &got.delivery.properties;
    assert_eq!(*properties.delivery_mode(), Some(2));
    assert_eq!(
        properties.message_id().as_ref().map(|id| id.as_str()),
        Some("stripe:evt_props:email")
    );
    assert_eq!(JobMessage::decode(&got.delivery.data).unwrap(), sent);
    assert!(
        !format!("{sink:?}").contains("guest:guest"),
        "no password in Debug"
    );
    remove(&topology).await;
}

#[tokio::test]
async fn an_unroutable_job_is_refused_permanently_and_no_broker_is_transient() {
    // An exchange with no queue bound: the mandatory publish comes back.
    let topology = RabbitTopology::new(&unique("hookgate_unbound")).unwrap();
    let (_connection, channel) = channel().await;
    channel
        .exchange_declare(
            topology.exchange().into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let err = RabbitSink::new(amqp_url(), &topology)
        .send(&job("evt_lost", "email"))
        .await
        .unwrap_err();
    assert!(!err.is_transient(), "{err}");
    assert!(err.to_string().contains("declare the topology"), "{err}");
    remove(&topology).await;

    let closed = proxy::closed_port().await;
    let err = RabbitSink::new(url_via(closed), &topology)
        .send(&job("evt_lost", "email"))
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
}

#[tokio::test]
async fn failing_jobs_are_retried_then_dead_lettered_and_undecodable_messages_rejected() {
    let topology = topology().await;
    let effects = Effects::default();
    let set = |ids: &[&str]| ids.iter().map(|s| (*s).to_owned()).collect::<HashSet<_>>();
    let mut registry = Registry::new();
    registry.best_effort(
        "stripe",
        "invoice.*",
        "email",
        recording(
            &effects,
            "email",
            set(&["evt_flaky"]),
            set(&["evt_broken"]),
            set(&["evt_refused"]),
        ),
    );
    let dead_letter = MemoryDeadLetter::new();
    let worker = Arc::new(
        RabbitWorker::builder(
            amqp_url(),
            &topology,
            runner(&registry, MemoryStore::new(), &dead_letter, 3),
        )
        .build(),
    );
    let (_connection, channel) = channel().await;
    channel
        .basic_publish(
            topology.exchange().into(),
            "job".into(),
            Default::default(),
            b"not a job",
            Default::default(),
        )
        .await
        .unwrap();
    let sink = RabbitSink::new(amqp_url(), &topology);
    for id in ["evt_ok", "evt_flaky", "evt_broken", "evt_refused"] {
        sink.send(&job(id, "email")).await.unwrap();
    }
    sink.send(&job("evt_ok", "sms")).await.unwrap();

    let stop = Arc::new(tokio::sync::Notify::new());
    let run = {
        let (worker, stop) = (Arc::clone(&worker), Arc::clone(&stop));
        tokio::spawn(async move { worker.run_until(stop.notified()).await })
    };
    wait_for("three dead letters", Duration::from_secs(30), || {
        dead_letter.len() == 3
    })
    .await;
    let mut dead = 0;
    for _ in 0..100 {
        dead = count(topology.dead_letter_queue()).await;
        if dead == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.notify_one();
    run.await.unwrap();

    assert_eq!(dead, 4, "three exhausted jobs and the undecodable message");
    assert_eq!(count(topology.queue()).await, 0);
    assert_eq!(count(topology.retry_queue()).await, 0);
    let effects_now = effects.effects();
    assert_eq!(effects_now.get(&key("evt_ok", "email")), Some(&1));
    assert_eq!(effects_now.get(&key("evt_flaky", "email")), Some(&1));
    assert_eq!(effects_now.len(), 2);
    assert_eq!(effects.calls(&key("evt_flaky", "email")), 2);
    assert_eq!(effects.calls(&key("evt_broken", "email")), 3);
    assert_eq!(effects.calls(&key("evt_refused", "email")), 1);
    let mut entries: Vec<_> = dead_letter
        .entries()
        .into_iter()
        .map(|e| {
            (
                e.event_id().to_owned(),
                e.handler.to_string(),
                e.reason,
                e.attempts,
            )
        })
        .collect();
    entries.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    assert_eq!(
        entries,
        vec![
            (
                "evt_broken".into(),
                "email".into(),
                DeadLetterReason::RetriesExhausted,
                3
            ),
            (
                "evt_ok".into(),
                "sms".into(),
                DeadLetterReason::RetriesExhausted,
                3
            ),
            (
                "evt_refused".into(),
                "email".into(),
                DeadLetterReason::Permanent,
                1
            ),
        ]
    );
    assert_eq!(worker.undecodable(), 1);
    assert!(!format!("{worker:?}").contains("guest:guest"));
    remove(&topology).await;
}

/// 300 jobs, some failing once, some published twice, through workers
/// sharing one store: one behind a proxy whose connections are cut mid-run,
/// one frozen after completing a job and before acknowledging it, then
/// crashed, one frozen inside a handler before its effect, then crashed.
/// Every job's effect happens exactly once per job key; none is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_job_has_its_effect_once_through_cuts_crashes_and_redeliveries() {
    const JOBS: usize = 300;
    let topology = topology().await;
    let effects = Effects::default();
    let flaky: HashSet<String> = (0..JOBS)
        .filter(|i| i % 7 == 0)
        .map(|i| format!("evt_{i}"))
        .collect();
    let mut registry = Registry::new();
    registry.best_effort(
        "stripe",
        "invoice.*",
        "email",
        recording(&effects, "email", flaky, HashSet::new(), HashSet::new()),
    );
    let hang = Arc::new(tokio::sync::Notify::new());
    let hung_once = Arc::new(AtomicBool::new(false));
    let mut hanging = Registry::new();
    {
        let effects = effects.clone();
        let (hang, hung_once) = (Arc::clone(&hang), Arc::clone(&hung_once));
        hanging.best_effort(
            "stripe",
            "invoice.*",
            "email",
            handler_fn(move |event: Event| {
                let (effects, hang, hung_once) =
                    (effects.clone(), Arc::clone(&hang), Arc::clone(&hung_once));
                async move {
                    effects.call(&event, "email");
                    if !hung_once.swap(true, Ordering::SeqCst) {
                        hang.notify_one();
                        std::future::pending::<()>().await;
                    }
                    effects.effect(&event, "email");
                    Ok::<(), HandlerError>(())
                }
            }),
        );
    }
    let store = Arc::new(MemoryStore::new());
    let freezing = Arc::new(FreezeAfterComplete::new(Arc::clone(&store)));
    let dead_letter = MemoryDeadLetter::new();

    let cut_proxy = Proxy::start(amqp_addr()).await;
    let freeze_proxy = Proxy::start(amqp_addr()).await;
    let hang_proxy = Proxy::start(amqp_addr()).await;
    let worker = |url: String, registry: &Registry, store, prefetch| {
        Arc::new(
            RabbitWorker::builder(url, &topology, runner(registry, store, &dead_letter, 10))
                .prefetch(prefetch)
                .build(),
        )
    };
    let cut_worker = worker(
        url_via(cut_proxy.addr()),
        &registry,
        Arc::clone(&store) as Arc<dyn hookgate::IdempotencyStore>,
        8,
    );
    let freezing_worker = worker(
        url_via(freeze_proxy.addr()),
        &registry,
        Arc::clone(&freezing) as Arc<dyn hookgate::IdempotencyStore>,
        1,
    );
    let hanging_worker = worker(
        url_via(hang_proxy.addr()),
        &hanging,
        Arc::clone(&store) as Arc<dyn hookgate::IdempotencyStore>,
        1,
    );
    let spawn = |worker: &Arc<RabbitWorker>| {
        let worker = Arc::clone(worker);
        tokio::spawn(async move { worker.run_until(std::future::pending()).await })
    };
    let cut_task = spawn(&cut_worker);
    freezing.arm();
    let freezing_task = spawn(&freezing_worker);
    let hanging_task = spawn(&hanging_worker);

    let sink = RabbitSink::new(amqp_url(), &topology);
    for i in 0..JOBS {
        sink.send(&job(&format!("evt_{i}"), "email")).await.unwrap();
        if i % 10 == 0 {
            // The relay sends again after a lost confirm: RabbitMQ keeps both.
            sink.send(&job(&format!("evt_{i}"), "email")).await.unwrap();
        }
        if i == JOBS / 3 {
            cut_proxy.cut();
        }
        if i == JOBS / 2 {
            cut_proxy.restore().await;
        }
    }
    // The crashes: the task is gone and so is its connection.
    tokio::time::timeout(Duration::from_secs(20), freezing.frozen.notified())
        .await
        .expect("the freezing worker completed a job");
    freezing_task.abort();
    freeze_proxy.cut();
    tokio::time::timeout(Duration::from_secs(20), hang.notified())
        .await
        .expect("the hanging worker started a job");
    hanging_task.abort();
    hang_proxy.cut();
    let _ = freezing_task.await;
    let _ = hanging_task.await;
    let replacement = worker(
        amqp_url(),
        &registry,
        Arc::clone(&store) as Arc<dyn hookgate::IdempotencyStore>,
        8,
    );
    let replacement_task = spawn(&replacement);

    wait_for("every job's effect", Duration::from_secs(90), || {
        effects.done() == JOBS
    })
    .await;
    let mut left = (u32::MAX, u32::MAX);
    for _ in 0..200 {
        left = (
            count(topology.queue()).await,
            count(topology.retry_queue()).await,
        );
        if left == (0, 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let redeliveries still due arrive: none may run again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    cut_task.abort();
    replacement_task.abort();

    let effects = effects.effects();
    assert_eq!(effects.len(), JOBS, "no job lost");
    let twice: Vec<_> = effects.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "effects not exactly once: {twice:?}");
    assert!(dead_letter.is_empty());
    assert_eq!(left, (0, 0), "every delivery settled");
    assert_eq!(count(topology.dead_letter_queue()).await, 0);
    let frozen = freezing
        .frozen_key
        .lock()
        .unwrap()
        .clone()
        .expect("a frozen key");
    assert_eq!(effects[&frozen], 1);
    let done =
        cut_worker.runner().counts().already_done + replacement.runner().counts().already_done;
    assert!(done >= 30, "the duplicate publishes and the frozen job's redelivery were answered from the store ({done})");
    remove(&topology).await;
}

#[tokio::test]
async fn the_sink_reconnects_after_its_connection_is_cut() {
    let topology = topology().await;
    let proxy = Proxy::start(amqp_addr()).await;
    let sink = RabbitSink::new(url_via(proxy.addr()), &topology);
    sink.send(&job("evt_before", "email")).await.unwrap();
    proxy.cut();
    let err = sink.send(&job("evt_during", "email")).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    proxy.restore().await;
    sink.send(&job("evt_after", "email")).await.unwrap();
    let mut stored = 0;
    for _ in 0..50 {
        stored = count(topology.queue()).await;
        if stored == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(stored, 2, "the jobs confirmed before and after the cut");
    remove(&topology).await;
}

#[tokio::test]
async fn without_a_broker_setup_fails_and_a_worker_keeps_trying_until_told_to_stop() {
    let closed = url_via(proxy::closed_port().await);
    let topology = RabbitTopology::new(&unique("hookgate_nobroker")).unwrap();
    let err = topology.declare_at(&closed).await.unwrap_err();
    assert!(
        matches!(err, hookgate::jobs::rabbitmq::RabbitError::Connect(_)),
        "{err}"
    );
    let worker = RabbitWorker::builder(
        closed,
        &topology,
        JobRunner::builder(Registry::new(), MemoryStore::new())
            .build()
            .unwrap(),
    )
    .build();
    let stopped = tokio::time::timeout(
        Duration::from_secs(10),
        worker.run_until(tokio::time::sleep(Duration::from_millis(1200))),
    )
    .await;
    assert!(
        stopped.is_ok(),
        "the worker stops when told, connected or not"
    );
    assert_eq!(worker.runner().counts(), Default::default());
}
