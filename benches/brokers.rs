//! Best-effort jobs beyond the process: what handing one job to a broker
//! costs, next to the bare HMAC-SHA256 of its 1 KiB body (the work
//! verification cannot avoid) and the in-process path, so `bench-ratios`
//! reads each as a multiple of the verification.
//!
//! Group `broker_publish` (wall time: the work runs in the client's tasks and
//! in the servers), one iteration = one job of a 1 KiB body unless the name
//! says `x16` (16 jobs sent at once, awaited together):
//! - `bare_hmac`: HMAC-SHA256 of the body;
//! - `encode`: `JobMessage::encode` (the wire frame every sink sends);
//! - `in_process_runner`: `JobRunner::run` of the job with a `MemoryStore`
//!   and a no-op handler (claim, run, complete): what the in-process path
//!   costs per job, and what a worker adds per received job;
//! - `nats_publish`, `nats_publish_x16`: `NatsSink::send` to a file-backed
//!   work-queue stream, waiting for JetStream's ack (HOOKGATE_NATS_URL);
//! - `rabbit_publish`, `rabbit_publish_x16`: `RabbitSink::send` of a
//!   persistent message to a durable queue, waiting for the confirm
//!   (HOOKGATE_AMQP_URL).
//!
//! Every job has a fresh key (no broker-side deduplication), made outside the
//! timed part. Streams and queues are unique per run and deleted at the end.
//! `cargo bench --bench brokers --features nats,rabbitmq -- --warm-up-time 1 --measurement-time 3`

mod common;

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use futures_util::future::join_all;
use hookgate::jobs::nats::{async_nats, NatsSink, NatsStream};
use hookgate::jobs::rabbitmq::lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use hookgate::jobs::rabbitmq::lapin::{Connection, ConnectionProperties};
use hookgate::jobs::rabbitmq::{RabbitSink, RabbitTopology};
use hookgate::jobs::{JobMessage, JobRunner, JobSink, Verdict};
use hookgate::{handler_fn, Event, HandlerError, Identity, MemoryStore, Registry};
use time::OffsetDateTime;

const BODY_LEN: usize = 1024;

fn run_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("bench_{}_{nanos}", std::process::id())
}

/// Fresh jobs of a 1 KiB body, each with its own key.
fn jobs(body: &[u8], counter: &AtomicU64, count: usize) -> Vec<JobMessage> {
    (0..count)
        .map(|_| {
            let n = counter.fetch_add(1, Ordering::Relaxed);
            let event = Event::new(
                "stripe",
                Identity::new(format!("evt_{n:024}"), "invoice.paid"),
                body.to_vec(),
            );
            JobMessage::new(&event, "email", OffsetDateTime::now_utc())
        })
        .collect()
}

fn bench_sink(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    rt: &tokio::runtime::Runtime,
    sink: &dyn JobSink,
    body: &[u8],
    counter: &AtomicU64,
    at_once: usize,
) {
    group.throughput(Throughput::Elements(at_once as u64));
    group.bench_function(name, |b| {
        b.iter_batched(
            || jobs(body, counter, at_once),
            |jobs| {
                rt.block_on(async {
                    let sent = join_all(jobs.iter().map(|job| sink.send(black_box(job)))).await;
                    assert!(sent.iter().all(Result::is_ok), "every publish confirmed");
                })
            },
            BatchSize::SmallInput,
        )
    });
}

fn broker_publish(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let body = vec![b'x'; BODY_LEN];
    let counter = AtomicU64::new(0);
    let mut group = c.benchmark_group("broker_publish");
    group.throughput(Throughput::Elements(1));

    let keyed = common::keyed();
    let expected = common::tag(&[&body]);
    group.bench_function("bare_hmac", |b| {
        b.iter(|| common::bare_hmac(&keyed, &[black_box(&body)], &expected))
    });

    let one = jobs(&body, &counter, 1).remove(0);
    group.bench_function("encode", |b| b.iter(|| black_box(&one).encode()));

    let mut registry = Registry::new();
    registry.best_effort(
        "stripe",
        "*",
        "email",
        handler_fn(|_| async { Ok::<(), HandlerError>(()) }),
    );
    let runner = JobRunner::builder(registry, MemoryStore::new())
        .build()
        .expect("a runner");
    group.bench_function("in_process_runner", |b| {
        b.iter_batched(
            || jobs(&body, &counter, 1).remove(0),
            |job| {
                let verdict = rt.block_on(runner.run(black_box(&job), 1));
                assert_eq!(verdict, Verdict::Succeeded);
            },
            BatchSize::SmallInput,
        )
    });

    let id = run_id();
    let nats_url =
        std::env::var("HOOKGATE_NATS_URL").unwrap_or_else(|_| "127.0.0.1:4222".to_owned());
    let jetstream = rt.block_on(async {
        let client = async_nats::connect(&nats_url)
            .await
            .unwrap_or_else(|e| panic!("NATS must be reachable at {nats_url}: {e}"));
        async_nats::jetstream::new(client)
    });
    let stream = format!("HG_{id}");
    let subject = format!("hookgate.bench.{id}");
    rt.block_on(NatsStream::new(&stream, &subject).create_or_get(&jetstream))
        .expect("the bench stream");
    let nats = NatsSink::new(jetstream.clone(), subject);
    bench_sink(&mut group, "nats_publish", &rt, &nats, &body, &counter, 1);
    bench_sink(
        &mut group,
        "nats_publish_x16",
        &rt,
        &nats,
        &body,
        &counter,
        16,
    );
    let _ = rt.block_on(jetstream.delete_stream(&stream));

    let amqp_url = std::env::var("HOOKGATE_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
    let topology = RabbitTopology::new(&format!("hookgate_{id}")).expect("short names");
    rt.block_on(topology.declare_at(&amqp_url))
        .unwrap_or_else(|e| panic!("RabbitMQ must be reachable at HOOKGATE_AMQP_URL: {e}"));
    let rabbit = RabbitSink::new(amqp_url.clone(), &topology);
    group.throughput(Throughput::Elements(1));
    bench_sink(
        &mut group,
        "rabbit_publish",
        &rt,
        &rabbit,
        &body,
        &counter,
        1,
    );
    bench_sink(
        &mut group,
        "rabbit_publish_x16",
        &rt,
        &rabbit,
        &body,
        &counter,
        16,
    );
    group.finish();

    rt.block_on(async {
        let connection = Connection::connect(&amqp_url, ConnectionProperties::default())
            .await
            .expect("RabbitMQ for the clean-up");
        let channel = connection.create_channel().await.expect("a channel");
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
    });
}

criterion_group!(brokers, broker_publish);
criterion_main!(brokers);
