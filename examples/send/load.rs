//! Sending: `concurrency` tasks share one counter of deliveries, each sending
//! over the client's pool of keep-alive connections and timing only the
//! request and its answer.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::deliveries::Deliveries;

/// How long one request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of an answer's body names it in the histogram.
const ANSWER_TEXT_LIMIT: usize = 80;

type HttpClient = Client<HttpConnector, Full<bytes::Bytes>>;

/// What a run's requests came back with.
#[derive(Debug, Default)]
pub struct Tally {
    /// Answers by status code and body text (`200 ok` and `200 duplicate:
    /// already processed` are different answers).
    pub answers: BTreeMap<(u16, String), u64>,
    /// Requests that got no answer (connection refused or reset, timeout), by cause.
    pub failures: BTreeMap<String, u64>,
    /// The time from sending each answered request to reading its whole answer.
    pub latencies: Vec<Duration>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        for (answer, n) in other.answers {
            *self.answers.entry(answer).or_default() += n;
        }
        for (cause, n) in other.failures {
            *self.failures.entry(cause).or_default() += n;
        }
        self.latencies.extend(other.latencies);
    }

    /// How many requests were answered.
    pub fn answered(&self) -> u64 {
        self.answers.values().sum()
    }

    /// How many requests got no answer.
    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }
}

/// A finished run.
#[derive(Debug)]
pub struct Run {
    /// What came back.
    pub tally: Tally,
    /// From the first request sent to the last answer read.
    pub elapsed: Duration,
}

/// Sends deliveries `0..count` to `url` from `concurrency` tasks, starting no
/// new delivery after `duration`.
pub async fn run(
    url: Uri,
    deliveries: Arc<Deliveries>,
    count: u64,
    concurrency: usize,
    duration: Option<Duration>,
) -> Run {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(concurrency)
        .build(connector);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = duration.map(|d| started + d);

    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let worker = Worker {
                client: client.clone(),
                url: url.clone(),
                deliveries: Arc::clone(&deliveries),
                next: Arc::clone(&next),
                count,
                deadline,
            };
            tokio::spawn(worker.run())
        })
        .collect();
    let mut tally = Tally::default();
    for worker in workers {
        match worker.await {
            Ok(part) => tally.merge(part),
            Err(err) => {
                *tally
                    .failures
                    .entry(format!("sender task: {err}"))
                    .or_default() += 1
            }
        }
    }
    Run {
        tally,
        elapsed: started.elapsed(),
    }
}

/// One of the `concurrency` sending tasks.
struct Worker {
    client: HttpClient,
    url: Uri,
    deliveries: Arc<Deliveries>,
    next: Arc<AtomicU64>,
    count: u64,
    deadline: Option<Instant>,
}

impl Worker {
    /// Takes the next delivery until none are left or time is up.
    async fn run(self) -> Tally {
        let mut tally = Tally::default();
        loop {
            if self
                .deadline
                .is_some_and(|deadline| Instant::now() >= deadline)
            {
                break;
            }
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= self.count {
                break;
            }
            let delivery = self.deliveries.get(i);
            let mut request = Request::new(Full::new(delivery.body));
            *request.method_mut() = Method::POST;
            *request.uri_mut() = self.url.clone();
            *request.headers_mut() = delivery.headers;
            let sent = Instant::now();
            match tokio::time::timeout(REQUEST_TIMEOUT, self.send(request)).await {
                Ok(Ok(answer)) => {
                    tally.latencies.push(sent.elapsed());
                    *tally.answers.entry(answer).or_default() += 1;
                }
                Ok(Err(cause)) => *tally.failures.entry(cause).or_default() += 1,
                Err(_) => {
                    let cause = format!("no answer within {} s", REQUEST_TIMEOUT.as_secs());
                    *tally.failures.entry(cause).or_default() += 1;
                }
            }
        }
        tally
    }

    /// Sends `request` and reads the whole answer: its status and body text,
    /// or why there was none.
    async fn send(&self, request: Request<Full<bytes::Bytes>>) -> Result<(u16, String), String> {
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| describe(&e))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| describe(&e))?
            .to_bytes();
        let text = String::from_utf8_lossy(&body);
        let text: String = text.trim().chars().take(ANSWER_TEXT_LIMIT).collect();
        Ok((status, text))
    }
}

/// An error with its causes, `outer: inner: root`, so that "client error
/// (Connect)" also says "Connection refused".
fn describe(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
