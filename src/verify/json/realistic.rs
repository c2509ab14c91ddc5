//! The fast scanner against the old one and serde_json on generated realistic
//! documents: webhook-like objects of many short keys and strings (of every
//! length around the 8- and 16-byte fast-path windows), numbers, nesting,
//! escapes, non-ASCII text and white space, some of them then cut short or with
//! one byte changed so the fast paths also meet faults at every position.

use std::ops::Range;

use proptest::prelude::*;

use super::{check_members, reference};

/// Turns proptest's numbers into decisions; an exhausted list reads as zeros
/// (the plainest alternative), so shrinking shrinks the document.
struct Gen {
    choices: Vec<u32>,
    at: usize,
}

impl Gen {
    fn next(&mut self) -> u32 {
        let value = self.choices.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        value
    }

    fn below(&mut self, n: usize) -> usize {
        self.next() as usize % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const WORDS: &[&str] = &[
    "id",
    "object",
    "type",
    "created",
    "amount_total",
    "currency",
    "usd",
    "price_1Ab2",
    "li_00000001",
    "evt_1NsfZlLkdIwHu7ixHnmc3TzS",
    "checkout.session.completed",
    "Aviator sunglasses, polarized",
    "jenny@example.com",
    "",
    "a",
    "unit_amoun",
    "exactly_15_byte",
    "exactly_16_bytes",
    "exactly_17_bytes_",
];
const SPECIALS: &[&str] = &[
    "\\n",
    "\\\"",
    "\\\\",
    "\\/",
    "\\u00e9",
    "\\ud83d\\ude00",
    "\\ud800",
    "\u{e9}",
    "\u{20ac}",
    "\u{1f600}",
    "caf\u{e9}",
    "\u{7f}",
];
const NUMBERS: &[&str] = &[
    "0",
    "1",
    "1900",
    "-1",
    "1700000000",
    "0.5",
    "-12.75",
    "1e3",
    "2.5E-7",
    "123456789012345678",
    "1234567890123456789",
    "18446744073709551616",
    "1e400",
];

/// The text of a string, quotes included.
fn string(g: &mut Gen, out: &mut Vec<u8>) {
    out.push(b'"');
    match g.below(10) {
        0..=5 => out.extend(g.pick(WORDS).as_bytes()),
        6 | 7 => {
            // Plain text of any length around the windows.
            let len = g.below(40);
            out.extend((0..len).map(|i| b'a' + (i % 26) as u8));
        }
        _ => {
            for _ in 0..=g.below(3) {
                out.extend(g.pick(WORDS).as_bytes());
                out.extend(g.pick(SPECIALS).as_bytes());
            }
        }
    }
    out.push(b'"');
}

fn space(g: &mut Gen, out: &mut Vec<u8>, pretty: bool) {
    if pretty {
        out.extend(g.pick(&[" ", "\n  ", "\r\n\t", "  "]).as_bytes());
    }
}

fn value(g: &mut Gen, out: &mut Vec<u8>, depth: usize, pretty: bool) {
    let kinds = if depth >= 4 { 6 } else { 9 };
    match g.below(kinds) {
        0 | 1 => string(g, out),
        2 | 3 => out.extend(g.pick(NUMBERS).as_bytes()),
        4 => out.extend(g.pick(&["null", "true", "false"]).as_bytes()),
        5 => string(g, out),
        6 | 7 => object(g, out, depth + 1, pretty),
        _ => {
            out.push(b'[');
            for i in 0..g.below(5) {
                if i > 0 {
                    out.push(b',');
                }
                space(g, out, pretty);
                value(g, out, depth + 1, pretty);
            }
            space(g, out, pretty);
            out.push(b']');
        }
    }
}

fn object(g: &mut Gen, out: &mut Vec<u8>, depth: usize, pretty: bool) {
    out.push(b'{');
    for i in 0..g.below(12) {
        if i > 0 {
            out.push(b',');
        }
        space(g, out, pretty);
        string(g, out);
        space(g, out, pretty);
        out.push(b':');
        space(g, out, pretty);
        value(g, out, depth, pretty);
    }
    space(g, out, pretty);
    out.push(b'}');
}

/// A realistic document, then in a third of the cases one fault: cut short,
/// or one byte replaced, inserted or removed.
fn document(g: &mut Gen) -> Vec<u8> {
    let pretty = g.below(4) == 0;
    let mut out = Vec::new();
    object(g, &mut out, 0, pretty);
    if g.below(3) == 2 && !out.is_empty() {
        let at = g.below(out.len());
        let byte = *b"\"\\:,{}[] 0e-.\x01\x80\xffa"
            .get(g.below(18))
            .unwrap_or(&b'x');
        match g.below(4) {
            0 => out.truncate(at),
            1 => out[at] = byte,
            2 => out.insert(at, byte),
            _ => {
                out.remove(at);
            }
        }
    }
    out
}

type Members = Vec<(Vec<u8>, Range<usize>)>;

fn scan(
    body: &[u8],
    check: impl Fn(&[u8], &mut dyn FnMut(&[u8], Range<usize>)) -> Result<(), super::Invalid>,
) -> (Result<(), super::Invalid>, Members) {
    let mut members = Vec::new();
    let result = check(body, &mut |key, value| members.push((key.to_vec(), value)));
    (result, members)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 20_000, ..ProptestConfig::default() })]

    #[test]
    fn fast_scanner_matches_the_old_one_and_serde_json_on_realistic_documents(
        choices in proptest::collection::vec(any::<u32>(), 0..600),
    ) {
        let body = document(&mut Gen { choices, at: 0 });
        let fast = scan(&body, |b, m| check_members(b, m));
        let old = scan(&body, |b, m| reference::check_members(b, m));
        let shown = String::from_utf8_lossy(&body);
        prop_assert_eq!(&fast, &old, "on {}", shown);
        prop_assert_eq!(
            fast.0.is_ok(),
            serde_json::from_slice::<serde_json::Value>(&body).is_ok(),
            "serde_json's verdict on {}",
            shown
        );
    }
}
