//! Helpers shared by the pipeline tests: signed deliveries, counting handlers,
//! stores that fail, a small deterministic random source.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use hookgate::store::MemoryStore;
use hookgate::{
    handler_fn, testing, Claim, Event, FencingToken, Fingerprint, GitHub, Handler, HandlerError,
    Headers, IdempotencyStore, Registry, RejectedDelivery, Shopify, StoreError,
};

pub const GH_SECRET: &str = "gh-test-secret";
pub const STRIPE_SECRET: &str = "whsec_test_secret";
pub const SHOPIFY_SECRET: &str = "shpss_test_secret";

pub fn github() -> GitHub {
    GitHub::builder(GH_SECRET).build().expect("a valid secret")
}

pub fn shopify() -> Shopify {
    Shopify::builder(SHOPIFY_SECRET)
        .build()
        .expect("a valid secret")
}

/// A signed GitHub `issues` delivery with this delivery id and body.
pub fn gh_delivery(delivery_id: &str, body: &str) -> (Bytes, Headers) {
    gh_event_delivery("issues", delivery_id, body)
}

/// A signed GitHub delivery with this `X-GitHub-Event`, delivery id and body.
pub fn gh_event_delivery(event: &str, delivery_id: &str, body: &str) -> (Bytes, Headers) {
    let headers = Headers::from_pairs(testing::github_headers(
        GH_SECRET,
        body.as_bytes(),
        event,
        delivery_id,
    ));
    (Bytes::copy_from_slice(body.as_bytes()), headers)
}

/// A signed Shopify delivery with this topic, webhook id and body, from
/// [`testing::SHOPIFY_TEST_SHOP`] unless `shop` names another domain.
pub fn shopify_delivery(
    topic: &str,
    webhook_id: &str,
    shop: Option<&str>,
    body: &str,
) -> (Bytes, Headers) {
    let mut pairs = testing::shopify_headers(SHOPIFY_SECRET, body.as_bytes(), topic, webhook_id);
    if let Some(shop) = shop {
        for (name, value) in &mut pairs {
            if name == "X-Shopify-Shop-Domain" {
                *value = shop.to_owned();
            }
        }
    }
    (
        Bytes::copy_from_slice(body.as_bytes()),
        Headers::from_pairs(pairs),
    )
}

/// Collects what the `on_rejected` hook receives.
#[derive(Clone, Default)]
pub struct RejectedLog {
    entries: Arc<Mutex<Vec<RejectedDelivery>>>,
}

impl RejectedLog {
    /// The hook to give `PipelineBuilder::on_rejected`.
    pub fn hook(&self) -> impl Fn(RejectedDelivery) + Send + Sync + 'static {
        let entries = self.entries.clone();
        move |rejected| entries.lock().unwrap().push(rejected)
    }

    pub fn entries(&self) -> Vec<RejectedDelivery> {
        self.entries.lock().unwrap().clone()
    }
}

/// The body of an `issues.opened` delivery numbered `n`.
pub fn issue_body(n: u64) -> String {
    format!(r#"{{"action":"opened","issue":{{"number":{n}}}}}"#)
}

/// Counts how often each event id was handled successfully.
#[derive(Clone, Default)]
pub struct Tally {
    counts: Arc<Mutex<HashMap<String, u64>>>,
}

impl Tally {
    pub fn record(&self, event: &Event) {
        *self
            .counts
            .lock()
            .unwrap()
            .entry(event.id().to_owned())
            .or_default() += 1;
    }

    pub fn count(&self, id: &str) -> u64 {
        self.counts.lock().unwrap().get(id).copied().unwrap_or(0)
    }

    pub fn total(&self) -> u64 {
        self.counts.lock().unwrap().values().sum()
    }

    pub fn snapshot(&self) -> HashMap<String, u64> {
        self.counts.lock().unwrap().clone()
    }

    /// A handler that records each event it sees and succeeds.
    pub fn handler(&self) -> impl Handler + 'static {
        let tally = self.clone();
        handler_fn(move |event| {
            let tally = tally.clone();
            async move {
                tally.record(&event);
                Ok::<(), HandlerError>(())
            }
        })
    }
}

/// A handler that passes `f` its call number (0 for the first call) and the
/// event; the returned counter tells how many calls were made.
pub fn numbered<F, Fut>(f: F) -> (Arc<AtomicU64>, impl Handler + 'static)
where
    F: Fn(u64, Event) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    let calls = Arc::new(AtomicU64::new(0));
    let counter = calls.clone();
    let handler = handler_fn(move |event| f(counter.fetch_add(1, Ordering::SeqCst), event));
    (calls, handler)
}

/// A registry with one critical handler on every GitHub `issues` event.
pub fn registry_with_critical(handler: impl Handler + 'static) -> Registry {
    let mut registry = Registry::new();
    registry.critical("github", "issues", "record", handler);
    registry
}

/// A memory store sized for tests.
pub fn store() -> MemoryStore {
    MemoryStore::builder().capacity(100_000).build()
}

/// A store that cannot be reached.
#[derive(Debug, Default)]
pub struct DownStore {
    pub calls: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
#[error("connection refused")]
pub struct Refused;

#[async_trait]
impl IdempotencyStore for DownStore {
    async fn claim(&self, _: &str, _: Fingerprint, _: Duration) -> Result<Claim, StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Err(StoreError::unavailable(Refused))
    }
    async fn complete(&self, _: &str, _: FencingToken, _: Duration) -> Result<(), StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Err(StoreError::unavailable(Refused))
    }
    async fn release(&self, _: &str, _: FencingToken, _: &str) -> Result<(), StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Err(StoreError::unavailable(Refused))
    }
}

/// An error for injected failures.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Injected(pub &'static str);

/// A small deterministic random source (splitmix64) so failures replay.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// `true` with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    /// A number in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next_u64() % (high - low + 1)
    }
}

/// A memory store whose `complete` always fails as if the connection dropped.
#[derive(Debug, Default)]
pub struct CompleteFails {
    inner: MemoryStore,
}

#[async_trait]
impl IdempotencyStore for CompleteFails {
    async fn claim(
        &self,
        key: &str,
        fp: Fingerprint,
        lease: Duration,
    ) -> Result<Claim, StoreError> {
        self.inner.claim(key, fp, lease).await
    }
    async fn complete(&self, _: &str, _: FencingToken, _: Duration) -> Result<(), StoreError> {
        Err(StoreError::unavailable(Refused))
    }
    async fn release(
        &self,
        key: &str,
        token: FencingToken,
        reason: &str,
    ) -> Result<(), StoreError> {
        self.inner.release(key, token, reason).await
    }
}

/// Waits until `done` holds, failing the test after 5 s.
pub async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let waited = tokio::time::timeout(Duration::from_secs(5), async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting for {what}");
}

/// When a [`SlowStore`] delay runs relative to the store call it slows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lag {
    /// Before the call reaches the store (a queue, a lock wait): abandoned in
    /// the delay, the call never happens.
    Before,
    /// After the store did the work (a slow reply): abandoned in the delay,
    /// the call has happened all the same.
    After,
}

/// Delays injected into a [`SlowStore`]'s calls, settable while it runs.
#[derive(Debug, Default)]
pub struct Delays {
    claim: Mutex<Option<(Lag, Duration)>>,
    complete: Mutex<Option<(Lag, Duration)>>,
    release: Mutex<Option<(Lag, Duration)>>,
}

impl Delays {
    pub fn claim(&self, lag: Lag, delay: Duration) {
        *self.claim.lock().unwrap() = Some((lag, delay));
    }
    pub fn complete(&self, lag: Lag, delay: Duration) {
        *self.complete.lock().unwrap() = Some((lag, delay));
    }
    pub fn release(&self, lag: Lag, delay: Duration) {
        *self.release.lock().unwrap() = Some((lag, delay));
    }
    /// No more delays.
    pub fn clear(&self) {
        for delay in [&self.claim, &self.complete, &self.release] {
            *delay.lock().unwrap() = None;
        }
    }
}

/// A memory store whose calls sleep (on tokio's clock) as [`Delays`] says,
/// and that counts the calls that reached the inner store.
#[derive(Debug, Clone)]
pub struct SlowStore {
    pub inner: Arc<MemoryStore>,
    pub delays: Arc<Delays>,
    pub completes: Arc<AtomicU64>,
    pub releases: Arc<AtomicU64>,
}

impl SlowStore {
    /// Slows `inner`; no delays until [`SlowStore::delays`] sets some.
    pub fn on(inner: MemoryStore) -> Self {
        Self {
            inner: Arc::new(inner),
            delays: Arc::default(),
            completes: Arc::default(),
            releases: Arc::default(),
        }
    }
}

impl Default for SlowStore {
    fn default() -> Self {
        Self::on(store())
    }
}

/// Runs `call` with `delay` before or after it.
async fn lagged<T>(delay: Option<(Lag, Duration)>, call: impl Future<Output = T>) -> T {
    match delay {
        Some((Lag::Before, delay)) => {
            tokio::time::sleep(delay).await;
            call.await
        }
        Some((Lag::After, delay)) => {
            let out = call.await;
            tokio::time::sleep(delay).await;
            out
        }
        None => call.await,
    }
}

#[async_trait]
impl IdempotencyStore for SlowStore {
    async fn claim(
        &self,
        key: &str,
        fp: Fingerprint,
        lease: Duration,
    ) -> Result<Claim, StoreError> {
        let delay = *self.delays.claim.lock().unwrap();
        lagged(delay, self.inner.claim(key, fp, lease)).await
    }
    async fn complete(
        &self,
        key: &str,
        token: FencingToken,
        retention: Duration,
    ) -> Result<(), StoreError> {
        let delay = *self.delays.complete.lock().unwrap();
        lagged(delay, async {
            self.completes.fetch_add(1, Ordering::SeqCst);
            self.inner.complete(key, token, retention).await
        })
        .await
    }
    async fn release(
        &self,
        key: &str,
        token: FencingToken,
        reason: &str,
    ) -> Result<(), StoreError> {
        let delay = *self.delays.release.lock().unwrap();
        lagged(delay, async {
            self.releases.fetch_add(1, Ordering::SeqCst);
            self.inner.release(key, token, reason).await
        })
        .await
    }
}
