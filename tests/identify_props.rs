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

use common::headers;
use hookgate::testing::{github_headers, shopify_headers};
use hookgate::{GitHub, Headers, IdentifyError, Identity, Shopify, Stripe, Verifier};
use proptest::prelude::*;
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;
use std::sync::LazyLock;
use time::OffsetDateTime;

/// Cases of the property when `PROPTEST_CASES` is not set.
const DEFAULT_CASES: u32 = 100_000;
const SECRET: &str = "whsec_identify_props";

/// Nesting far past serde_json's limit of 128, as in the issue.
const VERY_DEEP: usize = 100_000;

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

// ---- generator of hostile JSON ---------------------------------------------
//
// Proptest draws a list of numbers; `Gen` turns it into a document, each number
// one decision (which alternative, how many members, which byte). An exhausted
// list reads as zeros, and every decision lists its plainest valid alternative
// first, so shrinking the list shrinks the document towards simple valid JSON.
// Building from plain code keeps the 100,000 cases fast in a debug build.
//
// Every building block is usually valid and sometimes hostile, at rates chosen so
// that about half the documents are valid JSON and most objects carry `id` and
// `type`: both verdicts and the extracted values get exercised.

struct Gen {
    choices: Vec<u32>,
    at: usize,
}

impl Gen {
    fn new(choices: Vec<u32>) -> Self {
        Self { choices, at: 0 }
    }

    fn next(&mut self) -> u32 {
        let value = self.choices.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        value
    }

    /// A number in `0..n`.
    fn below(&mut self, n: usize) -> usize {
        self.next() as usize % n
    }

    /// `true` with probability `per_mille` / 1000 (never on an exhausted list).
    fn chance(&mut self, per_mille: u32) -> bool {
        self.next() % 1000 >= 1000 - per_mille
    }

    /// The index of the alternative drawn with these weights.
    fn weighted(&mut self, weights: &[u32]) -> usize {
        let mut x = self.next() % weights.iter().sum::<u32>();
        for (i, &w) in weights.iter().enumerate() {
            if x < w {
                return i;
            }
            x -= w;
        }
        unreachable!("x is below the sum of the weights")
    }

    fn pick<'a>(&mut self, items: &[&'a [u8]]) -> &'a [u8] {
        items[self.below(items.len())]
    }
}

/// Container nesting of the generated values (before any deliberate deep wrap).
const MAX_VALUE_DEPTH: usize = 4;

const VALID_ESCAPES: &[&[u8]] = &[
    b"\\n",
    b"\\\"",
    b"\\\\",
    b"\\/",
    b"\\b",
    b"\\f",
    b"\\r",
    b"\\t",
    b"\\ud83d\\ude00",
    b"\\uDBFF\\uDFFF",
    b"\\u0000",
    b"\\u001f",
    b"\\u0022",
    b"\\u00e9",
    b"\\uFFFF",
];
const BAD_ESCAPES: &[&[u8]] = &[
    b"\\x",
    b"\\u12",
    b"\\u12g4",
    b"\\U0041",
    b"\\'",
    b"\\0",
    b"\\ud800\\n",
    b"\\ud800\\",
    b"\\ud800\\u",
    b"\\ud800x",
    b"\\",
    b"\\u",
];
/// Not UTF-8 (overlong forms, encoded surrogates, past U+10FFFF, cut sequences,
/// stray continuation bytes), or refused raw in a JSON string.
const BAD_STRING_BYTES: &[&[u8]] = &[
    b"\xff",
    b"\x80",
    b"\xbf",
    b"\xc0\xaf",
    b"\xc1\xbf",
    b"\xe0\x80\xaf",
    b"\xe0\x9f\xbf",
    b"\xed\xa0\x80",
    b"\xed\xbf\xbf",
    b"\xf0\x8f\xbf\xbf",
    b"\xf4\x90\x80\x80",
    b"\xf5\x80\x80\x80",
    b"\xf8\x88\x80\x80\x80",
    b"\xfe",
    b"\xc3",
    b"\xe2\x82",
    b"\xf0\x9f\x98",
    b"\xc3\x28",
    b"\xe2\x28\xa1",
    b"\x00",
    b"\x1f",
    b"\n",
    b"\t",
];
const GOOD_NON_ASCII: &[&[u8]] = &[
    b"\x7f",
    b"\xc3\xa9",
    b"\xe2\x82\xac",
    b"\xf0\x9f\x98\x80",
    b"\xef\xbf\xbf",
    b"\xf4\x8f\xbf\xbf",
    b"\xed\x9f\xbf",
    b"\xee\x80\x80",
    b"\xc2\x80",
    b"\xf0\x90\x80\x80",
];
const PLAIN: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ._:/-";

fn unicode_escape(out: &mut Vec<u8>, unit: u32, upper: bool) {
    let unit = unit & 0xFFFF;
    out.extend(
        if upper {
            format!("\\u{unit:04X}")
        } else {
            format!("\\u{unit:04x}")
        }
        .bytes(),
    );
}

fn escape(g: &mut Gen, out: &mut Vec<u8>) {
    let upper = g.chance(500);
    match g.weighted(&[8, 4, 4, 1, 1, 1, 1]) {
        0 => out.extend_from_slice(g.pick(VALID_ESCAPES)),
        1 => {
            // Any code unit outside the surrogates.
            let unit = g.next() % (0x1_0000 - 0x800);
            let unit = if unit >= 0xD800 { unit + 0x800 } else { unit };
            unicode_escape(out, unit, upper);
        }
        2 => {
            unicode_escape(out, 0xD800 + g.next() % 0x400, upper);
            unicode_escape(out, 0xDC00 + g.next() % 0x400, !upper);
        }
        // Hostile: lone or mispaired surrogates, unknown or cut escapes.
        3 => unicode_escape(out, 0xD800 + g.next() % 0x400, upper),
        4 => unicode_escape(out, 0xDC00 + g.next() % 0x400, upper),
        5 => {
            unicode_escape(out, 0xD800 + g.next() % 0x400, upper);
            unicode_escape(out, g.next(), upper);
        }
        _ => out.extend_from_slice(g.pick(BAD_ESCAPES)),
    }
}

fn string(g: &mut Gen, out: &mut Vec<u8>) {
    out.push(b'"');
    for _ in 0..g.below(5) {
        match g.weighted(&[20, 6, 6, 1, 1]) {
            0 => {
                for _ in 0..g.below(13) {
                    out.push(PLAIN[g.below(PLAIN.len())]);
                }
            }
            1 => out.extend_from_slice(g.pick(GOOD_NON_ASCII)),
            2 => escape(g, out),
            3 => out.extend_from_slice(g.pick(BAD_STRING_BYTES)),
            _ => {
                // A long plain run, so the scan's wide steps are exercised too.
                for _ in 0..40 + g.below(90) {
                    out.push(b'a' + g.below(26) as u8);
                }
            }
        }
    }
    if !g.chance(5) {
        out.push(b'"');
    }
}

fn digits(g: &mut Gen, out: &mut Vec<u8>, count: usize) {
    for _ in 0..count {
        out.push(b'0' + g.below(10) as u8);
    }
}

const EDGE_NUMBERS: &[&[u8]] = &[
    b"1e400",
    b"-1e400",
    b"1E400",
    b"1e+400",
    b"1e-400",
    b"1e308",
    b"1e309",
    b"-1e309",
    b"1.7976931348623157e308",
    b"1.7976931348623158e308",
    b"1.7976931348623159e308",
    b"1.8e308",
    b"17976931348623157e292",
    b"17976931348623159e292",
    b"0e999999999999",
    b"0.0e99999999999999999999",
    b"1e2147483647",
    b"1e2147483648",
    b"1e-2147483649",
    b"1e99999999999999999999",
    b"-0",
    b"-0.0",
    b"18446744073709551615",
    b"18446744073709551616",
    b"-9223372036854775808",
    b"-9223372036854775809",
    b"123456789012345678901234567890",
    b"0.1e-330",
    b"100e306",
    b"1000e306",
];
const BAD_NUMBERS: &[&[u8]] = &[
    b"01", b"-01", b"00", b"-", b"1.", b"-1.", b".5", b"1e", b"1E+", b"1e-", b"+1", b"1.e5",
    b"--1", b"0x1F", b"1_000", b"-.5", b"1ee5", b"1.5.5", b"- 1",
];

fn number(g: &mut Gen, out: &mut Vec<u8>) {
    match g.weighted(&[6, 3, 2, 4, 2, 1, 1, 2, 1]) {
        0 => out.extend((g.next() as i32).to_string().bytes()),
        1 => {
            let wide = (u64::from(g.next()) << 32) | u64::from(g.next());
            out.extend(wide.to_string().bytes());
        }
        2 => {
            let f = f64::from_bits((u64::from(g.next()) << 32) | u64::from(g.next()));
            if f.is_finite() {
                out.extend(format!("{f:e}").bytes());
            } else {
                out.push(b'7');
            }
        }
        3 => {
            // JSON's grammar, all parts random.
            if g.chance(300) {
                out.push(b'-');
            }
            if g.chance(200) {
                out.push(b'0');
            } else {
                out.push(b'1' + g.below(9) as u8);
                let count = g.below(23);
                digits(g, out, count);
            }
            if g.chance(400) {
                out.push(b'.');
                let count = 1 + g.below(22);
                digits(g, out, count);
            }
            if g.chance(400) {
                out.push(if g.chance(500) { b'e' } else { b'E' });
                match g.below(3) {
                    0 => {}
                    1 => out.push(b'+'),
                    _ => out.push(b'-'),
                }
                let count = 1 + g.below(3);
                digits(g, out, count);
            }
        }
        4 => {
            // Near and past the edge of f64, where serde_json's own rounding decides.
            out.push(b'1' + g.below(9) as u8);
            if g.chance(500) {
                out.push(b'.');
                let count = 1 + g.below(17);
                digits(g, out, count);
            }
            out.extend(format!("e{}", 290 + g.below(30)).bytes());
        }
        5 => {
            out.push(b'1' + g.below(9) as u8);
            let count = 295 + g.below(25);
            digits(g, out, count);
        }
        6 => {
            out.extend_from_slice(b"0.");
            out.extend(std::iter::repeat_n(b'0', 300 + g.below(40)));
            out.push(b'1' + g.below(9) as u8);
            if g.chance(500) {
                out.extend(format!("e{}", g.below(700)).bytes());
            }
        }
        7 => out.extend_from_slice(g.pick(EDGE_NUMBERS)),
        // Hostile: outside JSON's number grammar.
        _ => out.extend_from_slice(g.pick(BAD_NUMBERS)),
    }
}

fn literal(g: &mut Gen, out: &mut Vec<u8>) {
    if g.chance(15) {
        out.extend_from_slice(g.pick(&[
            b"tru",
            b"nul",
            b"fals",
            b"nulll",
            b"True",
            b"NaN",
            b"Infinity",
            b"-Infinity",
            b"undefined",
            b"t",
        ]));
    } else {
        out.extend_from_slice(g.pick(&[b"true", b"false", b"null"]));
    }
}

/// White space: mostly none or JSON's four characters, rarely characters JSON
/// refuses.
fn ws(g: &mut Gen, out: &mut Vec<u8>) {
    match g.weighted(&[120, 40, 1]) {
        0 => {}
        1 => out.extend_from_slice(g.pick(&[b" ", b"\n", b"\t", b"\r", b"\r\n  ", b"  \n\t "])),
        _ => out.extend_from_slice(g.pick(&[
            b"\x0c",
            b"\x0b",
            b"\xc2\xa0",
            b"\x00",
            b"\xef\xbb\xbf",
        ])),
    }
}

/// A separator between members: a comma, rarely missing, doubled or wrong.
fn comma(g: &mut Gen, out: &mut Vec<u8>) {
    if g.chance(7) {
        out.extend_from_slice(g.pick(&[b"", b",,", b";", b":"]));
    } else {
        out.push(b',');
    }
}

/// Keys: the ones identify reads (also escaped), others, and arbitrary strings.
fn key(g: &mut Gen, out: &mut Vec<u8>) {
    match g.weighted(&[12, 4, 1]) {
        0 => out.extend_from_slice(g.pick(&[
            b"\"id\"",
            b"\"type\"",
            b"\"object\"",
            b"\"created\"",
            b"\"action\"",
            b"\"i\\u0064\"",
            b"\"typ\\u0065\"",
            b"\"\\u0061ction\"",
            b"\"data\"",
            b"\"x\"",
            b"\"\"",
            b"\"ID\"",
            b"\"id \"",
        ])),
        1 => string(g, out),
        _ => {
            if g.chance(500) {
                number(g, out)
            } else {
                literal(g, out)
            }
        }
    }
}

/// Values the known keys usually hold: mostly usable strings, else anything.
fn field_value(g: &mut Gen, out: &mut Vec<u8>) {
    if g.chance(500) {
        out.extend_from_slice(g.pick(&[
            b"\"evt_1\"",
            b"\"invoice.paid\"",
            b"\"opened\"",
            b"\"evt_\\u0031\"",
            b"\"a\\nb\"",
            b"\"evt_2\"",
            b"\"checkout.session.completed\"",
            b"\"closed\"",
            b"\"caf\xc3\xa9\"",
            b"\"\\ud83d\\ude00\"",
        ]));
    } else if g.chance(250) {
        string(g, out);
    } else {
        out.extend_from_slice(g.pick(&[
            b"\"evt_1\"",
            b"\"invoice.paid\"",
            b"\"opened\"",
            b"\"\"",
            b"\"event\"",
            b"\"v2.core.event\"",
            b"1700000000",
            b"-1",
            b"9223372036854775807",
            b"9223372036854775808",
            b"1.5",
            b"null",
            b"[]",
            b"{}",
            b"\"evt_\\u0031\"",
            b"\"a\\nb\"",
            b"253402300800",
            b"-377705116801",
            b"\"evt_2\"",
            b"\"checkout.session.completed\"",
            b"\"closed\"",
        ]));
    }
}

/// `open`, the members separated by commas (rarely a trailing one), `close`.
fn container(g: &mut Gen, out: &mut Vec<u8>, open: u8, members: Vec<Vec<u8>>, close: u8) {
    out.push(open);
    for (i, member) in members.into_iter().enumerate() {
        if i > 0 {
            comma(g, out);
        }
        out.extend(member);
    }
    if g.chance(10) {
        out.push(b',');
    }
    out.push(close);
}

/// `key : value`, with white space around every token.
fn member(
    g: &mut Gen,
    key: impl FnOnce(&mut Gen, &mut Vec<u8>),
    value: impl FnOnce(&mut Gen, &mut Vec<u8>),
) -> Vec<u8> {
    let mut out = Vec::new();
    ws(g, &mut out);
    key(g, &mut out);
    ws(g, &mut out);
    if !g.chance(5) {
        out.push(b':');
    }
    ws(g, &mut out);
    value(g, &mut out);
    ws(g, &mut out);
    out
}

fn value(g: &mut Gen, out: &mut Vec<u8>, depth: usize) {
    let container_weight = if depth == 0 { 0 } else { 2 };
    match g.weighted(&[4, 3, 1, container_weight, container_weight]) {
        0 => string(g, out),
        1 => number(g, out),
        2 => literal(g, out),
        3 => {
            let items = (0..g.below(5))
                .map(|_| {
                    let mut item = Vec::new();
                    ws(g, &mut item);
                    value(g, &mut item, depth - 1);
                    ws(g, &mut item);
                    item
                })
                .collect();
            container(g, out, b'[', items, b']');
        }
        _ => {
            let members = (0..g.below(5))
                .map(|_| member(g, key, |g, out| value(g, out, depth - 1)))
                .collect();
            container(g, out, b'{', members, b'}');
        }
    }
}

/// A value, mostly as is, sometimes wrapped right at serde_json's nesting limit,
/// rarely far past it.
fn nested_value(g: &mut Gen, out: &mut Vec<u8>) {
    let depth = match g.weighted(&[40, 8, 8, 1]) {
        0 => 0,
        1 => 1 + g.below(7),
        2 => 120 + g.below(13),
        _ => VERY_DEEP,
    };
    let (open, close): (&[u8], &[u8]) = match g.below(3) {
        0 => (b"[", b"]"),
        1 => (b"{\"a\":", b"}"),
        _ => (b"[{\"id\":\"x\",\"a\":", b"}]"),
    };
    out.extend(open.repeat(depth));
    value(g, out, MAX_VALUE_DEPTH);
    out.extend(close.repeat(depth));
}

/// A top-level document: usually an object holding `id` and `type` among other
/// members (the skipped ones hostile at times), otherwise any value; then, rarely,
/// trailing garbage or one random byte edit.
fn document(g: &mut Gen) -> Vec<u8> {
    let mut out = Vec::new();
    ws(g, &mut out);
    if g.chance(200) {
        nested_value(g, &mut out);
    } else {
        let mut members = Vec::new();
        if !g.chance(150) {
            members.push(member(
                g,
                |_, out| out.extend_from_slice(b"\"id\""),
                field_value,
            ));
        }
        if !g.chance(150) {
            members.push(member(
                g,
                |_, out| out.extend_from_slice(b"\"type\""),
                field_value,
            ));
        }
        for _ in 0..g.below(5) {
            let other = if g.chance(600) {
                member(g, key, nested_value)
            } else {
                member(g, key, field_value)
            };
            members.push(other);
        }
        for i in (1..members.len()).rev() {
            members.swap(i, g.below(i + 1));
        }
        container(g, &mut out, b'{', members, b'}');
    }
    ws(g, &mut out);
    if g.chance(15) {
        out.extend_from_slice(g.pick(&[
            b"x", b"}", b"]", b"{}", b",", b"\x00", b"\xff", b"0", b"\"", b"null",
        ]));
    }
    if !out.is_empty() && g.chance(120) {
        let at = g.below(out.len());
        match g.below(4) {
            0 => out[at] = g.next() as u8,
            1 => out.insert(at, g.next() as u8),
            2 => {
                out.remove(at);
            }
            _ => out.truncate(at),
        }
    }
    out
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
    let [stripe, github] = faulty(&deep(127));
    assert!(
        v.stripe.identify(&stripe, &v.headers).is_err(),
        "127 + the top level"
    );
    assert!(v.github.identify(&github, &v.headers).is_err());
    let [stripe, github] = faulty(&deep(126));
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
    for body in faulty(&deep(VERY_DEEP)) {
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
