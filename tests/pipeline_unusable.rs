//! A verified delivery whose body serde_json would refuse (so `Event::json` would
//! fail in the handler) is answered `400 Unusable` and handed to `on_rejected`;
//! it is never claimed in the store nor routed to a handler. One test per case of
//! issue 8 (A3), each for Stripe, GitHub and Shopify; the same bodies without the
//! fault are processed, so the refusals come from the fault alone.
#![cfg(feature = "tokio")]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use common::pipeline::{store, Tally, GH_SECRET, STRIPE_SECRET};
use hookgate::{
    testing, Claim, FencingToken, Fingerprint, GitHub, Headers, IdempotencyStore, IdentifyError,
    MemoryStore, OutcomeKind, Pipeline, Registry, RejectedDelivery, RejectionReason, Shopify,
    StoreError, Stripe,
};
use time::OffsetDateTime;

const SHOPIFY_SECRET: &str = "shpss_test_secret";

/// A memory store that counts claims.
#[derive(Debug)]
struct CountingStore {
    inner: MemoryStore,
    claims: AtomicU64,
}

#[async_trait]
impl IdempotencyStore for CountingStore {
    async fn claim(
        &self,
        key: &str,
        fingerprint: Fingerprint,
        lease: Duration,
    ) -> Result<Claim, StoreError> {
        self.claims.fetch_add(1, Ordering::SeqCst);
        self.inner.claim(key, fingerprint, lease).await
    }
    async fn complete(
        &self,
        key: &str,
        token: FencingToken,
        retention: Duration,
    ) -> Result<(), StoreError> {
        self.inner.complete(key, token, retention).await
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

#[derive(Debug, Clone, Copy)]
enum Provider {
    Stripe,
    GitHub,
    Shopify,
}

const PROVIDERS: [Provider; 3] = [Provider::Stripe, Provider::GitHub, Provider::Shopify];

impl Provider {
    /// A body of this provider's shape with `fault` as the value of a field that
    /// identify does not read.
    fn body(self, fault: &[u8]) -> Bytes {
        let (start, end): (&[u8], &[u8]) = match self {
            Provider::Stripe => (
                br#"{"id":"evt_1","object":"event","type":"invoice.paid","data":{"object":"#,
                b"}}",
            ),
            Provider::GitHub => (br#"{"action":"opened","issue":{"number":1,"body":"#, b"}}"),
            Provider::Shopify => (br#"{"id":820982911946154508,"note":"#, b"}"),
        };
        Bytes::from([start, fault, end].concat())
    }

    fn headers(self, body: &[u8]) -> Headers {
        Headers::from_pairs(match self {
            Provider::Stripe => {
                testing::stripe_headers(STRIPE_SECRET, body, OffsetDateTime::now_utc())
            }
            Provider::GitHub => testing::github_headers(GH_SECRET, body, "issues", "d-1"),
            Provider::Shopify => {
                testing::shopify_headers(SHOPIFY_SECRET, body, "orders/create", "w-1")
            }
        })
    }
}

struct Harness {
    pipeline: Pipeline,
    store: Arc<CountingStore>,
    tally: Tally,
    rejected: Arc<Mutex<Vec<RejectedDelivery>>>,
}

fn harness() -> Harness {
    let store = Arc::new(CountingStore {
        inner: store(),
        claims: AtomicU64::new(0),
    });
    let tally = Tally::default();
    let rejected = Arc::new(Mutex::new(Vec::new()));
    let mut registry = Registry::new();
    for provider in ["stripe", "github", "shopify"] {
        registry.critical(provider, "*", "record", tally.handler());
    }
    let sink = rejected.clone();
    let pipeline = Pipeline::builder()
        .verifier(Stripe::builder(STRIPE_SECRET).build().unwrap())
        .verifier(GitHub::builder(GH_SECRET).build().unwrap())
        .verifier(Shopify::builder(SHOPIFY_SECRET).build().unwrap())
        .store(store.clone())
        .registry(registry)
        .on_rejected(move |delivery| sink.lock().unwrap().push(delivery))
        .build()
        .unwrap();
    Harness {
        pipeline,
        store,
        tally,
        rejected,
    }
}

/// Delivers `fault` in every provider's shape and checks the refusal.
async fn assert_unusable_everywhere(fault: &[u8]) {
    for provider in PROVIDERS {
        let h = harness();
        let body = provider.body(fault);
        assert!(
            serde_json::from_slice::<serde_json::Value>(&body).is_err(),
            "serde_json refuses the {provider:?} body"
        );
        let outcome = h
            .pipeline
            .handle(body.clone(), &provider.headers(&body))
            .await;
        assert_eq!(outcome.status(), 400, "{provider:?}: {outcome:?}");
        assert!(
            matches!(
                outcome.kind,
                OutcomeKind::Unusable(IdentifyError::InvalidJson(_))
            ),
            "{provider:?}: {outcome:?}"
        );
        let rejected = std::mem::take(&mut *h.rejected.lock().unwrap());
        assert_eq!(
            rejected.len(),
            1,
            "{provider:?}: handed to on_rejected once"
        );
        assert!(matches!(
            rejected[0].reason,
            RejectionReason::Unusable(IdentifyError::InvalidJson(_))
        ));
        assert_eq!(rejected[0].status, 400);
        assert_eq!(rejected[0].body, body);
        assert_eq!(
            h.store.claims.load(Ordering::SeqCst),
            0,
            "{provider:?}: never claimed"
        );
        assert_eq!(h.tally.total(), 0, "{provider:?}: no handler ran");
        assert_eq!(h.pipeline.stats().unusable, 1);
    }
}

#[tokio::test]
async fn the_same_bodies_without_a_fault_are_processed() {
    for provider in PROVIDERS {
        let h = harness();
        let body = provider.body(br#"{"note":"caf\u00e9 \ud83d\ude00","n":1e300,"deep":[[[]]]}"#);
        let outcome = h
            .pipeline
            .handle(body.clone(), &provider.headers(&body))
            .await;
        assert!(
            matches!(outcome.kind, OutcomeKind::Processed { .. }),
            "{provider:?}: {outcome:?}"
        );
        assert_eq!(h.store.claims.load(Ordering::SeqCst), 1);
        assert_eq!(h.tally.total(), 1);
        assert!(h.rejected.lock().unwrap().is_empty());
    }
}

#[tokio::test]
async fn invalid_utf8_in_a_skipped_string_is_unusable() {
    for bad in [
        &b"\xff"[..],
        b"\xc0\xaf",
        b"\xed\xa0\x80",
        b"\xf4\x90\x80\x80",
    ] {
        assert_unusable_everywhere(&[&b"\"a"[..], bad, b"b\""].concat()).await;
    }
}

#[tokio::test]
async fn a_lone_surrogate_escape_is_unusable() {
    assert_unusable_everywhere(br#""\ud800""#).await;
    assert_unusable_everywhere(br#""\udc00""#).await;
}

#[tokio::test]
async fn a_number_out_of_range_is_unusable() {
    assert_unusable_everywhere(b"1e400").await;
}

#[tokio::test]
async fn nesting_100k_deep_is_unusable() {
    let deep = [b"[".repeat(100_000), b"]".repeat(100_000)].concat();
    assert_unusable_everywhere(&deep).await;
}
