//! Helpers for the broker tests: unique names, a handler that counts its
//! effects per job key, and a store that freezes a worker between completing
//! a job and acknowledging its message (a crash before the ack).
#![allow(dead_code)] // each broker's test binary uses a different subset

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hookgate::async_trait;
use hookgate::jobs::JobMessage;
use hookgate::store::{Claim, FencingToken, Fingerprint, IdempotencyStore, StoreError};
use hookgate::{handler_fn, Event, HandlerError, Identity};
use time::OffsetDateTime;
use tokio::sync::Notify;

/// A name no other run or test uses: `prefix_<pid>_<nanos>_<n>`.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}_{}_{nanos}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The job of `handler` for event `id` of provider `"stripe"`.
pub fn job(id: &str, handler: &str) -> JobMessage {
    let body = format!(r#"{{"id":"{id}","type":"invoice.paid"}}"#);
    let event = Event::new(
        "stripe",
        Identity::new(id, "invoice.paid").with_metadata("api_version", "2025-01"),
        body.into_bytes(),
    );
    JobMessage::new(&event, handler, OffsetDateTime::now_utc())
}

/// The job key of `handler` for event `id` of provider `"stripe"`.
pub fn key(id: &str, handler: &str) -> String {
    format!("stripe:{id}:{handler}")
}

/// What the handlers did: effects (successful runs) and calls, per job key.
#[derive(Debug, Clone, Default)]
pub struct Effects {
    effects: Arc<Mutex<HashMap<String, u32>>>,
    calls: Arc<Mutex<HashMap<String, u32>>>,
}

impl Effects {
    /// Counts a call of `handler` for `event`; returns which call it is (1 for the first).
    pub fn call(&self, event: &Event, handler: &str) -> u32 {
        let mut calls = self.calls.lock().unwrap();
        let n = calls.entry(key(event.id(), handler)).or_insert(0);
        *n += 1;
        *n
    }

    /// Records the effect of `handler` for `event`.
    pub fn effect(&self, event: &Event, handler: &str) {
        *self
            .effects
            .lock()
            .unwrap()
            .entry(key(event.id(), handler))
            .or_insert(0) += 1;
    }

    /// Effects per key.
    pub fn effects(&self) -> HashMap<String, u32> {
        self.effects.lock().unwrap().clone()
    }

    /// Calls of that key.
    pub fn calls(&self, key: &str) -> u32 {
        self.calls.lock().unwrap().get(key).copied().unwrap_or(0)
    }

    /// How many distinct keys have an effect.
    pub fn done(&self) -> usize {
        self.effects.lock().unwrap().len()
    }
}

/// A handler recording its effect under `name`, after failing its first
/// call transiently for the event ids in `flaky`, and failing every call for
/// those in `broken` (transiently) and `refused` (permanently).
pub fn recording(
    effects: &Effects,
    name: &'static str,
    flaky: HashSet<String>,
    broken: HashSet<String>,
    refused: HashSet<String>,
) -> impl hookgate::Handler + 'static {
    let effects = effects.clone();
    handler_fn(move |event: Event| {
        let effects = effects.clone();
        let (flaky, broken, refused) = (
            flaky.contains(event.id()),
            broken.contains(event.id()),
            refused.contains(event.id()),
        );
        async move {
            let call = effects.call(&event, name);
            tokio::time::sleep(Duration::from_millis(2)).await;
            if refused {
                return Err(HandlerError::permanent("the order does not exist"));
            }
            if broken || (flaky && call == 1) {
                return Err(HandlerError::transient("the mail service timed out"));
            }
            effects.effect(&event, name);
            Ok(())
        }
    })
}

/// Waits until `done()` holds, polling; panics with `what` after `limit`.
pub async fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = tokio::time::Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A store that, once armed, freezes the first `complete` it sees after
/// completing it in the inner store: the worker that called it hangs after
/// its job is done and before it acknowledges the message, until the test
/// aborts it (a crash before the ack).
#[derive(Debug)]
pub struct FreezeAfterComplete<S> {
    inner: S,
    armed: Mutex<bool>,
    /// Notified when a `complete` froze.
    pub frozen: Notify,
    /// The job key that froze.
    pub frozen_key: Mutex<Option<String>>,
}

impl<S> FreezeAfterComplete<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            armed: Mutex::new(false),
            frozen: Notify::new(),
            frozen_key: Mutex::new(None),
        }
    }

    pub fn arm(&self) {
        *self.armed.lock().unwrap() = true;
    }
}

#[async_trait]
impl<S: IdempotencyStore> IdempotencyStore for FreezeAfterComplete<S> {
    async fn claim(
        &self,
        key: &str,
        fingerprint: Fingerprint,
        lease: Duration,
    ) -> Result<Claim, StoreError> {
        self.inner.claim(key, fingerprint, lease).await
    }

    async fn complete(
        &self,
        key: &str,
        token: FencingToken,
        retention: Duration,
    ) -> Result<(), StoreError> {
        self.inner.complete(key, token, retention).await?;
        let freeze = std::mem::replace(&mut *self.armed.lock().unwrap(), false);
        if freeze {
            // The job key, without the store key's `job:` prefix.
            let job_key = key.strip_prefix("job:").unwrap_or(key);
            *self.frozen_key.lock().unwrap() = Some(job_key.to_owned());
            self.frozen.notify_one();
            std::future::pending::<()>().await;
        }
        Ok(())
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
