//! `identify` agrees with serde_json: a body that
//! `serde_json::from_slice::<serde_json::Value>` refuses (as `Event::json` would)
//! is `IdentifyError::InvalidJson` for every provider (except GitHub's form
//! encoding and Shopify's XML format, which are not JSON), and on the bodies it
//! accepts, Stripe's id/type/created are what `Value["id"]`, `Value["type"]`,
//! `Value["created"]` hold and GitHub's kind carries the first top-level `action`.
//!
//! The property runs 100,000 generated hostile documents by default (deep nesting
//! around serde_json's limit and far past it, invalid and overlong UTF-8 in skipped
//! strings and keys, lone and paired surrogate escapes, huge exponents, duplicate
//! keys, broken separators, trailing garbage, odd white space, non-objects, and
//! random byte mutations of all of these). For a longer fuzzing run set
//! `PROPTEST_CASES`, e.g.
//! `PROPTEST_CASES=5000000 cargo test --release --test identify_props`.

mod common;
#[path = "identify_props/hostile.rs"]
mod hostile;

use std::sync::LazyLock;

use common::headers;
use hookgate::testing::{github_headers, shopify_headers};
use hookgate::{GitHub, Headers, IdentifyError, Identity, Shopify, Stripe, Verifier};
use hostile::{document, Gen, VERY_DEEP};
use proptest::prelude::*;
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;
use time::OffsetDateTime;

/// Cases of the property when `PROPTEST_CASES` is not set.
const DEFAULT_CASES: u32 = 100_000;
const SECRET: &str = "whsec_identify_props";

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

struct Verifiers {
    stripe: Stripe,
    github: GitHub,
    shopify: Shopify,
    headers: Headers,
}

impl Verifiers {
    fn new() -> Self {
        // identify reads only the identity headers, so one set serves every body.
        let mut pairs = github_headers(SECRET, b"{}", "push", "d-1");
        pairs.extend(shopify_headers(SECRET, b"{}", "orders/create", "w-1"));
        Self {
            stripe: Stripe::builder(SECRET).build().unwrap(),
            github: GitHub::builder(SECRET).build().unwrap(),
            shopify: Shopify::builder(SECRET).build().unwrap(),
            headers: headers(pairs),
        }
    }
}

/// What an identify call gave, in a comparable form.
#[derive(Debug, PartialEq)]
enum Verdict {
    Identified {
        id: String,
        kind: String,
        occurred_at: Option<OffsetDateTime>,
    },
    InvalidJson,
    Other(IdentifyError),
}

fn verdict(result: Result<Identity, IdentifyError>, with_metadata: bool) -> Verdict {
    match result {
        Ok(identity) => Verdict::Identified {
            id: identity.id,
            kind: identity.kind,
            occurred_at: if with_metadata {
                identity.occurred_at
            } else {
                None
            },
        },
        Err(IdentifyError::InvalidJson(_)) => Verdict::InvalidJson,
        Err(other) => Verdict::Other(other),
    }
}

/// Stripe's verdict from serde_json's own parse.
fn stripe_expected(value: Option<&Value>) -> Verdict {
    let Some(value) = value else {
        return Verdict::InvalidJson;
    };
    let text = |key: &str| value[key].as_str().filter(|s| !s.is_empty());
    if value["object"].as_str() == Some("v2.core.event") {
        return Verdict::Other(IdentifyError::Unsupported(
            "a Stripe thin event notification (`v2.core.event`), which stripe-node's constructEvent refuses as well",
        ));
    }
    let Some(id) = text("id") else {
        return Verdict::Other(IdentifyError::MissingField("id"));
    };
    let Some(kind) = text("type") else {
        return Verdict::Other(IdentifyError::MissingField("type"));
    };
    Verdict::Identified {
        id: id.to_owned(),
        kind: kind.to_owned(),
        occurred_at: value["created"]
            .as_i64()
            .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok()),
    }
}

/// The first top-level `action` of an object, read by serde_json's full parse.
struct FirstAction(Option<Value>);

impl<'de> Deserialize<'de> for FirstAction {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(FirstActionVisitor)
    }
}

struct FirstActionVisitor;

impl<'de> Visitor<'de> for FirstActionVisitor {
    type Value = FirstAction;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FirstAction, A::Error> {
        let mut first = None;
        while let Some(key) = map.next_key::<String>()? {
            let value: Value = map.next_value()?;
            if key == "action" && first.is_none() {
                first = Some(value);
            }
        }
        Ok(FirstAction(first))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<FirstAction, A::Error> {
        while seq.next_element::<Value>()?.is_some() {}
        Ok(FirstAction(None))
    }
    fn visit_bool<E>(self, _: bool) -> Result<FirstAction, E> {
        Ok(FirstAction(None))
    }
    fn visit_i64<E>(self, _: i64) -> Result<FirstAction, E> {
        Ok(FirstAction(None))
    }
    fn visit_u64<E>(self, _: u64) -> Result<FirstAction, E> {
        Ok(FirstAction(None))
    }
    fn visit_f64<E>(self, _: f64) -> Result<FirstAction, E> {
        Ok(FirstAction(None))
    }
    fn visit_str<E>(self, _: &str) -> Result<FirstAction, E> {
        Ok(FirstAction(None))
    }
    fn visit_unit<E>(self) -> Result<FirstAction, E> {
        Ok(FirstAction(None))
    }
}

/// GitHub's verdict: a form-encoded body keeps the bare event; otherwise
/// serde_json decides validity and the first top-level string `action` refines it.
fn github_expected(body: &[u8], value: Option<&Value>) -> Verdict {
    let bare = || Verdict::Identified {
        id: "d-1".into(),
        kind: "push".into(),
        occurred_at: None,
    };
    if body.starts_with(b"payload=") {
        return bare();
    }
    if value.is_none() {
        return Verdict::InvalidJson;
    }
    let first = serde_json::from_slice::<FirstAction>(body)
        .expect("serde_json accepted this body as a Value")
        .0;
    match first {
        Some(Value::String(action)) if !action.is_empty() => Verdict::Identified {
            id: "d-1".into(),
            kind: format!("push.{action}"),
            occurred_at: None,
        },
        _ => bare(),
    }
}

/// Shopify's verdict: XML bodies pass; anything else must be JSON.
fn shopify_expected(body: &[u8], value: Option<&Value>) -> Verdict {
    let rest = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let xml = rest
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'<');
    if xml || value.is_some() {
        Verdict::Identified {
            id: "w-1".into(),
            kind: "orders/create".into(),
            occurred_at: None,
        }
    } else {
        Verdict::InvalidJson
    }
}

/// Checks all three verifiers against serde_json on one body.
fn agrees(v: &Verifiers, body: &[u8]) -> Result<(), TestCaseError> {
    let value = serde_json::from_slice::<Value>(body).ok();
    let shown = || String::from_utf8_lossy(&body[..body.len().min(400)]).into_owned();
    prop_assert_eq!(
        verdict(v.stripe.identify(body, &v.headers), true),
        stripe_expected(value.as_ref()),
        "stripe on {}",
        shown()
    );
    prop_assert_eq!(
        verdict(v.github.identify(body, &v.headers), false),
        github_expected(body, value.as_ref()),
        "github on {}",
        shown()
    );
    prop_assert_eq!(
        verdict(v.shopify.identify(body, &v.headers), false),
        shopify_expected(body, value.as_ref()),
        "shopify on {}",
        shown()
    );
    Ok(())
}

static VERIFIERS: LazyLock<Verifiers> = LazyLock::new(Verifiers::new);

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn identify_agrees_with_serde_json_on_hostile_documents(
        choices in proptest::collection::vec(any::<u32>(), 0..400),
    ) {
        let body = document(&mut Gen::new(choices));
        agrees(&VERIFIERS, &body)?;
    }
}

// ---- named regressions: the four cases of the issue -------------------------

/// A body whose fault sits in a field identify skips, in Stripe's shape and in
/// GitHub's (read by Shopify too).
fn faulty(fault: impl AsRef<[u8]>) -> [Vec<u8>; 2] {
    let fault = fault.as_ref();
    [
        [
            &br#"{"id":"evt_1","object":"event","type":"invoice.paid","data":"#[..],
            fault,
            b"}",
        ]
        .concat(),
        [
            &br#"{"action":"opened","issue":{"number":1},"extra":"#[..],
            fault,
            b"}",
        ]
        .concat(),
    ]
}

fn deep(levels: usize) -> String {
    format!("{}{}", "[".repeat(levels), "]".repeat(levels))
}

fn assert_refused_by_all(body: &[u8]) {
    assert!(
        serde_json::from_slice::<Value>(body).is_err(),
        "serde_json refuses it"
    );
    let v = Verifiers::new();
    let results = [
        ("stripe", v.stripe.identify(body, &v.headers)),
        ("github", v.github.identify(body, &v.headers)),
        ("shopify", v.shopify.identify(body, &v.headers)),
    ];
    for (provider, result) in results {
        match result {
            Err(e @ IdentifyError::InvalidJson(_)) => assert_eq!(e.status(), 400),
            other => panic!("{provider} accepted a body serde_json refuses: {other:?}"),
        }
    }
}

/// The same shapes with the fault removed are identified (so the refusals above
/// come from the fault alone).
#[test]
fn the_shapes_without_a_fault_are_identified() {
    let v = Verifiers::new();
    let [stripe, github] = faulty(r#"{"note":"ok","n":1e300,"deep":[[[]]]}"#);
    let identity = v.stripe.identify(&stripe, &v.headers).unwrap();
    assert_eq!(
        (identity.id.as_str(), identity.kind.as_str()),
        ("evt_1", "invoice.paid")
    );
    assert_eq!(
        v.github.identify(&github, &v.headers).unwrap().kind,
        "push.opened"
    );
    assert!(v.shopify.identify(&github, &v.headers).is_ok());
    let [stripe, github] = faulty(deep(127));
    assert!(
        v.stripe.identify(&stripe, &v.headers).is_err(),
        "127 + the top level"
    );
    assert!(v.github.identify(&github, &v.headers).is_err());
    let [stripe, github] = faulty(deep(126));
    assert!(v.stripe.identify(&stripe, &v.headers).is_ok());
    assert!(v.github.identify(&github, &v.headers).is_ok());
    assert!(v.shopify.identify(&github, &v.headers).is_ok());
}

#[test]
fn invalid_utf8_in_a_skipped_string_is_refused() {
    for fault in [
        &b"\xff"[..],
        b"\xc0\xaf",
        b"\xed\xa0\x80",
        b"\xf4\x90\x80\x80",
    ] {
        let string = [&b"{\"note\":\"a"[..], fault, b"b\"}"].concat();
        for body in faulty(string) {
            assert_refused_by_all(&body);
        }
    }
    // In a skipped key too.
    assert_refused_by_all(b"{\"id\":\"evt_1\",\"type\":\"a.b\",\"k\xff\":1}");
}

#[test]
fn a_lone_surrogate_escape_is_refused() {
    for fault in [
        r#""\ud800""#,
        r#""\udc00""#,
        r#""\ud800\u0041""#,
        r#""x\uDBFFy""#,
    ] {
        for body in faulty(fault) {
            assert_refused_by_all(&body);
        }
    }
    let v = Verifiers::new();
    let [stripe, _] = faulty(r#""\ud83d\ude00""#);
    assert!(
        v.stripe.identify(&stripe, &v.headers).is_ok(),
        "a pair is fine"
    );
}

#[test]
fn a_number_out_of_range_is_refused() {
    for fault in [
        "1e400",
        "-1e400",
        "1.8e308",
        &format!("1{}", "0".repeat(400)),
    ] {
        for body in faulty(fault) {
            assert_refused_by_all(&body);
        }
    }
}

#[test]
fn nesting_100k_deep_is_refused() {
    for body in faulty(deep(VERY_DEEP)) {
        assert_refused_by_all(&body);
    }
}

#[test]
fn a_github_form_body_and_a_shopify_xml_body_are_not_json_and_still_pass() {
    let v = Verifiers::new();
    let form = b"payload=%7B%22action%22%3A%22opened%22%7D";
    assert_eq!(v.github.identify(form, &v.headers).unwrap().kind, "push");
    let xml = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<order><id>1</id></order>";
    assert!(v.shopify.identify(xml, &v.headers).is_ok());
    assert!(matches!(
        v.shopify.identify(b"order", &v.headers),
        Err(IdentifyError::InvalidJson(_))
    ));
}
