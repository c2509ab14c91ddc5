//! NATS JetStream jobs against the real local server (HOOKGATE_NATS_URL,
//! default 127.0.0.1:4222, JetStream on): publish deduplication, retries,
//! dead letters, and once-per-key effects through cut connections and
//! crashed workers. A server that is down fails these tests; nothing skips.
#![cfg(feature = "nats")]

#[path = "common/jobs.rs"]
mod jobs_support;
#[allow(dead_code)] // the shared proxy helpers: this file uses some
#[path = "common/proxy.rs"]
mod proxy;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hookgate::jobs::nats::{
    async_nats, NatsDeadLetter, NatsSink, NatsStream, NatsWorker, ERROR_HEADER, REASON_HEADER,
};
use hookgate::jobs::{JobMessage, JobRunner, JobSink};
use hookgate::{DeadLetterReason, MemoryDeadLetter, MemoryStore, Registry, RetryPolicy};
use jobs_support::{job, key, recording, unique, wait_for, Effects, FreezeAfterComplete};
use proxy::Proxy;

fn nats_url() -> String {
    std::env::var("HOOKGATE_NATS_URL").unwrap_or_else(|_| "127.0.0.1:4222".to_owned())
}

fn nats_addr() -> SocketAddr {
    let url = nats_url();
    let hostport = url.rsplit("://").next().unwrap_or(&url);
    let hostport = hostport.rsplit('@').next().unwrap_or(hostport);
    let hostport = hostport.split('/').next().unwrap_or(hostport);
    let hostport = if hostport.contains(':') {
        hostport.to_owned()
    } else {
        format!("{hostport}:4222")
    };
    std::net::ToSocketAddrs::to_socket_addrs(&hostport)
        .expect("resolve HOOKGATE_NATS_URL")
        .next()
        .expect("an address for HOOKGATE_NATS_URL")
}

async fn connect(addr: SocketAddr) -> async_nats::jetstream::Context {
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(2))
        .reconnect_delay_callback(|_| Duration::from_millis(100))
        .connect(addr.to_string())
        .await
        .unwrap_or_else(|e| {
            panic!("NATS must be reachable at {addr} (HOOKGATE_NATS_URL) with JetStream on: {e}")
        });
    async_nats::jetstream::new(client)
}

async fn direct() -> async_nats::jetstream::Context {
    let addr = nats_addr();
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(2))
        .connect(addr.to_string())
        .await
        .unwrap_or_else(|e| {
            panic!("NATS must be reachable at {addr} (HOOKGATE_NATS_URL) with JetStream on: {e}")
        });
    async_nats::jetstream::new(client)
}

/// A fresh memory stream and its subject.
async fn stream(js: &async_nats::jetstream::Context) -> (String, String) {
    let name = unique("HG");
    let subject = format!("hookgate.test.{name}");
    let mut settings = NatsStream::new(&name, &subject);
    settings.memory_storage = true;
    settings.max_age = Duration::from_secs(600);
    settings.create_or_get(js).await.expect("create the stream");
    (name, subject)
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

async fn pending(js: &async_nats::jetstream::Context, stream: &str) -> u64 {
    js.get_stream(stream)
        .await
        .expect("the stream")
        .info()
        .await
        .expect("stream info")
        .state
        .messages
}

#[tokio::test]
async fn the_same_job_published_three_times_is_stored_once() {
    let js = direct().await;
    let (name, subject) = stream(&js).await;
    let sink = NatsSink::new(js.clone(), subject);
    let first = job("evt_dup", "email");
    for attempt in 1..=3 {
        // Another attempt of the same job: same key, same Nats-Msg-Id.
        sink.send(&first.clone().with_attempt(attempt))
            .await
            .unwrap();
    }
    sink.send(&job("evt_other", "email")).await.unwrap();
    assert_eq!(pending(&js, &name).await, 2);
    js.delete_stream(&name).await.unwrap();
}

#[tokio::test]
async fn a_job_over_the_servers_payload_limit_is_refused_permanently() {
    let js = direct().await;
    let (name, subject) = stream(&js).await;
    let sink = NatsSink::new(js.clone(), subject);
    let event = hookgate::Event::new(
        "github",
        hookgate::Identity::new("d-big", "push"),
        vec![b'x'; 2 * 1024 * 1024],
    );
    let big = JobMessage::new(&event, "notify", time::OffsetDateTime::now_utc());
    let err = sink.send(&big).await.unwrap_err();
    assert!(!err.is_transient(), "{err}");
    assert_eq!(pending(&js, &name).await, 0);
    js.delete_stream(&name).await.unwrap();
}

#[tokio::test]
async fn a_send_without_a_connection_fails_transiently() {
    let proxy = Proxy::start(nats_addr()).await;
    let js = connect(proxy.addr()).await;
    let (name, subject) = stream(&js).await;
    proxy.cut();
    let sink = NatsSink::new(js, subject);
    let err = tokio::time::timeout(Duration::from_secs(30), sink.send(&job("evt_cut", "email")))
        .await
        .expect("the send gives up")
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    direct().await.delete_stream(&name).await.unwrap();
}

#[tokio::test]
async fn failing_jobs_are_retried_then_dead_lettered_and_undecodable_messages_terminated() {
    let js = direct().await;
    let (name, subject) = stream(&js).await;
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
    let worker = NatsWorker::builder(
        js.clone(),
        &name,
        "workers",
        runner(&registry, MemoryStore::new(), &dead_letter, 3),
    )
    .build()
    .await
    .unwrap();
    let sink = NatsSink::new(js.clone(), subject.clone());
    js.publish(subject.clone(), "not a job".into())
        .await
        .unwrap()
        .await
        .unwrap();
    for id in ["evt_ok", "evt_flaky", "evt_broken", "evt_refused"] {
        sink.send(&job(id, "email")).await.unwrap();
    }
    // A job for a handler no worker has: retried, then dead-lettered.
    sink.send(&job("evt_ok", "sms")).await.unwrap();

    let stop = Arc::new(tokio::sync::Notify::new());
    let run = {
        let stop = Arc::clone(&stop);
        async move {
            worker.run_until(stop.notified()).await;
            worker
        }
    };
    let run = tokio::spawn(run);
    wait_for("three dead letters", Duration::from_secs(30), || {
        dead_letter.len() == 3
    })
    .await;
    let mut left = u64::MAX;
    for _ in 0..100 {
        left = pending(&js, &name).await;
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(left, 0, "every message settled");
    stop.notify_one();
    let worker = run.await.unwrap();

    let effects_now = effects.effects();
    assert_eq!(effects_now.get(&key("evt_ok", "email")), Some(&1));
    assert_eq!(effects_now.get(&key("evt_flaky", "email")), Some(&1));
    assert_eq!(effects_now.len(), 2);
    assert_eq!(effects.calls(&key("evt_flaky", "email")), 2);
    assert_eq!(
        effects.calls(&key("evt_broken", "email")),
        3,
        "max_attempts runs, no more"
    );
    assert_eq!(
        effects.calls(&key("evt_refused", "email")),
        1,
        "a permanent error is not retried"
    );

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
    let counts = worker.runner().counts();
    assert_eq!((counts.succeeded, counts.dead_lettered), (2, 3));
    js.delete_stream(&name).await.unwrap();
}

/// 300 jobs, some failing once, some published twice, through three workers
/// sharing one store: one behind a proxy whose connections are cut mid-run,
/// one frozen after completing a job and before acknowledging it, then
/// aborted, one frozen inside a handler before its effect, then aborted.
/// Every job's effect happens exactly once per job key; none is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_job_has_its_effect_once_through_cuts_crashes_and_redeliveries() {
    const JOBS: usize = 300;
    let js = direct().await;
    let (name, subject) = stream(&js).await;
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
    // The third worker's handler hangs before its effect on its first job.
    let hang = Arc::new(tokio::sync::Notify::new());
    let hung_once = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut hanging = Registry::new();
    {
        let effects = effects.clone();
        let (hang, hung_once) = (Arc::clone(&hang), Arc::clone(&hung_once));
        hanging.best_effort(
            "stripe",
            "invoice.*",
            "email",
            hookgate::handler_fn(move |event: hookgate::Event| {
                let (effects, hang, hung_once) =
                    (effects.clone(), Arc::clone(&hang), Arc::clone(&hung_once));
                async move {
                    effects.call(&event, "email");
                    if !hung_once.swap(true, std::sync::atomic::Ordering::SeqCst) {
                        hang.notify_one();
                        std::future::pending::<()>().await;
                    }
                    effects.effect(&event, "email");
                    Ok::<(), hookgate::HandlerError>(())
                }
            }),
        );
    }
    let store = Arc::new(MemoryStore::new());
    let freezing = Arc::new(FreezeAfterComplete::new(Arc::clone(&store)));
    let dead_letter = MemoryDeadLetter::new();

    let proxy = Proxy::start(nats_addr()).await;
    let cut_worker = Arc::new(
        NatsWorker::builder(
            connect(proxy.addr()).await,
            &name,
            "workers",
            runner(&registry, Arc::clone(&store), &dead_letter, 10),
        )
        .concurrency(8)
        .build()
        .await
        .unwrap(),
    );
    let freezing_worker = Arc::new(
        NatsWorker::builder(
            direct().await,
            &name,
            "workers",
            runner(&registry, Arc::clone(&freezing), &dead_letter, 10),
        )
        .concurrency(1)
        .build()
        .await
        .unwrap(),
    );
    let hanging_worker = Arc::new(
        NatsWorker::builder(
            direct().await,
            &name,
            "workers",
            runner(&hanging, Arc::clone(&store), &dead_letter, 10),
        )
        .concurrency(1)
        .build()
        .await
        .unwrap(),
    );
    let spawn = |worker: &Arc<NatsWorker>| {
        let worker = Arc::clone(worker);
        tokio::spawn(async move { worker.run_until(std::future::pending()).await })
    };
    let cut_task = spawn(&cut_worker);
    freezing.arm();
    let freezing_task = spawn(&freezing_worker);
    let hanging_task = spawn(&hanging_worker);

    let sink = NatsSink::new(js.clone(), subject);
    for i in 0..JOBS {
        sink.send(&job(&format!("evt_{i}"), "email")).await.unwrap();
        if i % 10 == 0 {
            // The relay sends again after a lost acknowledgement.
            sink.send(&job(&format!("evt_{i}"), "email").with_attempt(1))
                .await
                .unwrap();
        }
        if i == JOBS / 3 {
            proxy.cut();
        }
        if i == JOBS / 2 {
            proxy.restore().await;
        }
    }
    // The crashes, once each worker is where the test wants it.
    tokio::time::timeout(Duration::from_secs(20), freezing.frozen.notified())
        .await
        .expect("the freezing worker completed a job");
    freezing_task.abort();
    tokio::time::timeout(Duration::from_secs(20), hang.notified())
        .await
        .expect("the hanging worker started a job");
    hanging_task.abort();
    let _ = freezing_task.await;
    let _ = hanging_task.await;
    // A replacement worker for the two that crashed.
    let replacement = Arc::new(
        NatsWorker::builder(
            direct().await,
            &name,
            "workers",
            runner(&registry, Arc::clone(&store), &dead_letter, 10),
        )
        .concurrency(8)
        .build()
        .await
        .unwrap(),
    );
    let replacement_task = spawn(&replacement);

    wait_for("every job's effect", Duration::from_secs(90), || {
        effects.done() == JOBS
    })
    .await;
    // Redeliveries still due (lost acks, the crashed workers' messages) come
    // in within ack_wait and must not run again.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut left = u64::MAX;
    for _ in 0..200 {
        left = pending(&js, &name).await;
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cut_task.abort();
    replacement_task.abort();

    let effects = effects.effects();
    assert_eq!(effects.len(), JOBS, "no job lost");
    let twice: Vec<_> = effects.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "effects not exactly once: {twice:?}");
    assert!(dead_letter.is_empty());
    assert_eq!(left, 0, "every message acknowledged");
    let frozen = freezing
        .frozen_key
        .lock()
        .unwrap()
        .clone()
        .expect("a frozen key");
    assert_eq!(
        effects[&frozen], 1,
        "the job completed before the crash ran once"
    );
    let done =
        cut_worker.runner().counts().already_done + replacement.runner().counts().already_done;
    assert!(
        done >= 1,
        "the frozen job's redelivery was answered from the store"
    );
    js.delete_stream(&name).await.unwrap();
}

#[tokio::test]
async fn dead_letters_can_go_to_a_nats_subject_of_their_own() {
    use futures_util::StreamExt;
    let js = direct().await;
    let (name, subject) = stream(&js).await;
    let (dead_stream, dead_subject) = stream(&js).await;
    let effects = Effects::default();
    let mut registry = Registry::new();
    registry.best_effort(
        "stripe",
        "invoice.*",
        "email",
        recording(
            &effects,
            "email",
            HashSet::new(),
            HashSet::new(),
            ["evt_refused".to_owned()].into(),
        ),
    );
    let runner = JobRunner::builder(registry, MemoryStore::new())
        .retry_policy(policy(3))
        .lease(Duration::from_secs(3))
        .dead_letter(NatsDeadLetter::new(js.clone(), dead_subject))
        .build()
        .unwrap();
    let worker = Arc::new(
        NatsWorker::builder(js.clone(), &name, "workers", runner)
            .build()
            .await
            .unwrap(),
    );
    NatsSink::new(js.clone(), subject)
        .send(&job("evt_refused", "email"))
        .await
        .unwrap();
    let task = {
        let worker = Arc::clone(&worker);
        tokio::spawn(async move { worker.run_until(std::future::pending()).await })
    };
    let dead = js.get_stream(&dead_stream).await.unwrap();
    let consumer = dead
        .create_consumer(async_nats::jetstream::consumer::pull::Config::default())
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let message = tokio::time::timeout(Duration::from_secs(20), messages.next())
        .await
        .expect("the entry arrives")
        .unwrap()
        .unwrap();
    task.abort();
    let entry = JobMessage::decode(&message.payload).unwrap();
    assert_eq!(entry.key(), key("evt_refused", "email"));
    assert_eq!(entry.attempt(), 1);
    let headers = message.headers.as_ref().expect("headers");
    assert_eq!(
        headers.get(REASON_HEADER).map(|v| v.as_str()),
        Some("permanent")
    );
    let error = headers
        .get(ERROR_HEADER)
        .map(|v| v.as_str().to_owned())
        .unwrap_or_default();
    assert!(error.contains("the order does not exist"), "{error}");
    assert_eq!(worker.runner().counts().dead_lettered, 1);
    js.delete_stream(&name).await.unwrap();
    js.delete_stream(&dead_stream).await.unwrap();
}

#[tokio::test]
async fn the_sink_sends_again_once_the_connection_is_back() {
    let proxy = Proxy::start(nats_addr()).await;
    let js = connect(proxy.addr()).await;
    let (name, subject) = stream(&js).await;
    let sink = NatsSink::new(js, subject);
    sink.send(&job("evt_before", "email")).await.unwrap();
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.restore().await;
    let mut sent = Err(None);
    for _ in 0..50 {
        match sink.send(&job("evt_after", "email")).await {
            Ok(()) => {
                sent = Ok(());
                break;
            }
            Err(e) => {
                assert!(e.is_transient(), "{e}");
                sent = Err(Some(e));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert!(sent.is_ok(), "{sent:?}");
    let direct = direct().await;
    assert_eq!(pending(&direct, &name).await, 2);
    direct.delete_stream(&name).await.unwrap();
}

#[tokio::test]
async fn a_worker_for_a_missing_stream_is_refused_with_its_name() {
    let js = direct().await;
    let missing = unique("HG_MISSING");
    let runner = JobRunner::builder(Registry::new(), MemoryStore::new())
        .build()
        .unwrap();
    let err = NatsWorker::builder(js, &missing, "workers", runner)
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, hookgate::jobs::nats::NatsSetupError::Stream { stream, .. } if *stream == missing),
        "{err}"
    );
}
