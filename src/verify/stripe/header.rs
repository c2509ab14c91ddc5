//! The `Stripe-Signature` header, read exactly as stripe-node reads it: entries
//! split on `,` and `=`, the last `t` read like JavaScript's `parseInt`, every
//! `v1` a candidate, decoded into stack buffers.

use std::fmt::{self, Write as _};

use memchr::memchr;
use time::OffsetDateTime;

use super::HEADER;
use crate::secret::TAG_LEN;
use crate::verify::encoding::{decode_lower_hex, HEX_LEN};
use crate::verify::VerifyError;

/// `(key, value)` of each `,`-separated entry, split at the first `=` with the value
/// ending at the next `=` (JavaScript's `item.split('=')` keeps `kv[0]` and `kv[1]`);
/// `None` when the entry has no `=`.
pub(super) fn entries(header: &[u8]) -> Entries<'_> {
    Entries { rest: Some(header) }
}

/// Iterator of [`entries`], searching separators with `memchr` (vectorised).
pub(super) struct Entries<'h> {
    /// What follows the last separator; `None` once the last entry was returned.
    pub(super) rest: Option<&'h [u8]>,
}

impl<'h> Iterator for Entries<'h> {
    type Item = (&'h [u8], Option<&'h [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.rest?;
        // The usual timestamp entry, `t=` and decimal digits up to a `,` or
        // the end, split without a search: digits hold neither separator.
        if let Some(digits) = rest.strip_prefix(b"t=") {
            let len = digits.iter().take_while(|b| b.is_ascii_digit()).count();
            let after = &digits[len..];
            if matches!(after.first(), None | Some(b',')) {
                self.rest = after.get(1..);
                return Some((&rest[..1], Some(&digits[..len])));
            }
        }
        let item = match memchr(b',', rest) {
            Some(comma) => {
                self.rest = Some(&rest[comma + 1..]);
                &rest[..comma]
            }
            None => {
                self.rest = None;
                rest
            }
        };
        Some(match memchr(b'=', item) {
            Some(eq) => {
                let value = &item[eq + 1..];
                let end = memchr(b'=', value).unwrap_or(value.len());
                (&item[..eq], Some(&value[..end]))
            }
            None => (item, None),
        })
    }
}

/// Well-formed `v1` values kept inline while parsing (Stripe sends one, or two
/// while a secret rolls).
const INLINE_CANDIDATES: usize = 2;

/// What the pass over the header found.
pub(super) struct ParsedHeader<'h> {
    pub(super) timestamp: Timestamp<'h>,
    /// The first well-formed `v1` values, decoded.
    pub(super) candidates: [[u8; TAG_LEN]; INLINE_CANDIDATES],
    /// How many of `candidates` are filled.
    pub(super) decoded: usize,
    /// Whether more well-formed `v1` values follow than `candidates` holds.
    pub(super) overflow: bool,
}

impl<'h> ParsedHeader<'h> {
    pub(super) fn parse(header: &'h [u8], plain_timestamp: bool) -> Result<Self, VerifyError> {
        let mut found = Findings::new(header);
        let mut candidates = [[0u8; TAG_LEN]; INLINE_CANDIDATES];
        let mut decoded = 0;
        let mut overflow = false;
        let mut keep = |candidate| match candidates.get_mut(decoded) {
            Some(slot) => {
                *slot = candidate;
                decoded += 1;
            }
            None => overflow = true,
        };
        let mut rest = (!header.is_empty()).then_some(header);
        while let Some(text) = rest {
            // The usual signature entry, `v1=` and 64 lowercase hex digits
            // up to a `,` or the end: decoding the digits proves the entry
            // holds no separator, so it is the entry the split below finds,
            // without searching for one.
            if let Some((candidate, after)) = usual_v1(text) {
                found.signatures += 1;
                keep(candidate);
                rest = after.get(1..);
                continue;
            }
            let mut entry = entries(text);
            let Some((key, value)) = entry.next() else {
                break;
            };
            rest = entry.rest;
            if let Some(candidate) = found.entry(key, value) {
                keep(candidate);
            }
        }
        Ok(Self {
            timestamp: found.checked(plain_timestamp)?,
            candidates,
            decoded,
            overflow,
        })
    }
}

/// What a pass over the header learned besides the candidates, and the
/// header's errors in stripe-node's order.
struct Findings<'h> {
    empty: bool,
    /// The last `t` entry's value, and whether it is plain decimal digits.
    timestamp: Option<(Timestamp<'h>, bool)>,
    /// How many `v1` entries.
    signatures: usize,
    /// Whether a `v1` entry has no `=`.
    signature_without_value: bool,
}

impl<'h> Findings<'h> {
    fn new(header: &[u8]) -> Self {
        Self {
            empty: header.is_empty(),
            timestamp: None,
            signatures: 0,
            signature_without_value: false,
        }
    }

    /// Takes in one entry; the decoded value of a well-formed `v1`.
    pub(super) fn entry(&mut self, key: &[u8], value: Option<&'h [u8]>) -> Option<[u8; TAG_LEN]> {
        if key == b"t" {
            let plain = value.is_some_and(|v| !v.is_empty() && v.iter().all(u8::is_ascii_digit));
            self.timestamp = Some((Timestamp::parse_int(value), plain));
        } else if key == b"v1" {
            self.signatures += 1;
            self.signature_without_value |= value.is_none();
            return value.and_then(decode_lower_hex);
        }
        None
    }

    /// The timestamp, or why the header is refused.
    fn checked(self, plain_timestamp: bool) -> Result<Timestamp<'h>, VerifyError> {
        if self.empty {
            return Err(VerifyError::MalformedHeader {
                header: HEADER,
                reason: "the value is empty",
            });
        }
        // stripe-node's "no timestamp" marker is -1, so an explicit `t=-1` is refused too.
        let (timestamp, plain) = self.timestamp.filter(|(t, _)| t.value != -1.0).ok_or(
            VerifyError::MalformedHeader {
                header: HEADER,
                reason: "no `t=` timestamp",
            },
        )?;
        if plain_timestamp && !plain {
            return Err(VerifyError::MalformedHeader {
                header: HEADER,
                reason: "the `t=` timestamp is not plain decimal digits",
            });
        }
        if self.signatures == 0 {
            return Err(VerifyError::NoSupportedSignature {
                header: HEADER,
                scheme: "v1",
            });
        }
        if self.signature_without_value {
            // stripe-node throws while comparing such an entry, whatever the others hold.
            return Err(VerifyError::MalformedHeader {
                header: HEADER,
                reason: "a `v1` entry has no `=` and no value",
            });
        }
        Ok(timestamp)
    }
}

/// The tag of an entry `v1=` + 64 lowercase hex digits that ends at a `,` or
/// at the end of `text`, and what follows it (the `,` and the rest, or
/// nothing); `None` for an entry of any other shape.
fn usual_v1(text: &[u8]) -> Option<([u8; TAG_LEN], &[u8])> {
    let value = text.strip_prefix(b"v1=")?;
    let (digits, after) = value.split_at_checked(HEX_LEN)?;
    if !matches!(after.first(), None | Some(b',')) {
        return None;
    }
    Some((decode_lower_hex(digits)?, after))
}

/// The `t` value as JavaScript's `parseInt(value, 10)` reads it, with the text
/// `${timestamp}` produces for the signed payload.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timestamp<'h> {
    pub(super) value: f64,
    pub(super) text: TimestampText<'h>,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum TimestampText<'h> {
    /// The digits as sent (the common case: no sign, no leading zero, ≤ 15 digits).
    Raw(&'h [u8]),
    /// JavaScript's rendering of the number.
    Rendered(StackText),
}

/// Longest JavaScript rendering of a number: `-1.7976931348623157e+308` (24 bytes).
const JS_NUMBER_MAX: usize = 32;

/// Integers of at most this many digits are exact in an `f64`.
const EXACT_DIGITS: usize = 15;

impl<'h> Timestamp<'h> {
    pub(super) fn parse_int(value: Option<&'h [u8]>) -> Self {
        let Some(value) = value else {
            return Self::rendered(f64::NAN);
        };
        Self::plain(value).unwrap_or_else(|| Self::parse_int_generally(value))
    }

    /// [`Timestamp::parse_int`] of any text.
    fn parse_int_generally(value: &'h [u8]) -> Self {
        // parseInt skips leading white space; a header string is Latin-1 in Node, so
        // the only non-ASCII white space it can hold is U+00A0.
        let start = value
            .iter()
            .position(|b| !matches!(b, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ' | 0xa0))
            .unwrap_or(value.len());
        let mut rest = &value[start..];
        let negative = rest.first() == Some(&b'-');
        if matches!(rest.first(), Some(b'-' | b'+')) {
            rest = &rest[1..];
        }
        let digits_len = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits_len == 0 {
            return Self::rendered(f64::NAN);
        }
        let digits = &rest[..digits_len];
        let significant = &digits[digits.iter().take_while(|&&b| b == b'0').count()..];
        let magnitude = if significant.len() <= EXACT_DIGITS {
            significant
                .iter()
                .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0')) as f64
        } else {
            // Only ASCII digits: the text is valid UTF-8 and a valid float literal;
            // Rust rounds it correctly, as JavaScript does.
            std::str::from_utf8(significant)
                .ok()
                .and_then(|s| s.parse::<f64>().ok())
                .unwrap_or(f64::INFINITY)
        };
        if !negative && !significant.is_empty() && significant.len() <= EXACT_DIGITS {
            return Self {
                value: magnitude,
                text: TimestampText::Raw(significant),
            };
        }
        Self::rendered(if negative { -magnitude } else { magnitude })
    }

    /// The usual value, read in one pass: 1 to 15 decimal digits, the first
    /// not `0` (what the general reading below returns as `Raw` too).
    fn plain(value: &'h [u8]) -> Option<Self> {
        if value.len() > EXACT_DIGITS || value.first().is_none_or(|&b| b == b'0') {
            return None;
        }
        let mut magnitude = 0u64;
        let mut digits = true;
        for &byte in value {
            let digit = byte.wrapping_sub(b'0');
            digits &= digit < 10;
            // At most 15 places of at most 255: far below u64::MAX.
            magnitude = magnitude * 10 + u64::from(digit);
        }
        digits.then_some(Self {
            value: magnitude as f64,
            text: TimestampText::Raw(value),
        })
    }

    pub(super) fn rendered(value: f64) -> Self {
        Self {
            value,
            text: TimestampText::Rendered(StackText::js_number(value)),
        }
    }

    pub(super) fn text(&self) -> &[u8] {
        match &self.text {
            TimestampText::Raw(raw) => raw,
            TimestampText::Rendered(text) => text.as_bytes(),
        }
    }

    pub(super) fn as_datetime(&self) -> Option<OffsetDateTime> {
        if !self.value.is_finite() || self.value.abs() > 1e15 {
            return None;
        }
        OffsetDateTime::from_unix_timestamp(self.value as i64).ok()
    }
}

/// A short text rendered on the stack.
#[derive(Clone, Copy)]
pub(super) struct StackText {
    buf: [u8; JS_NUMBER_MAX],
    len: usize,
}

impl fmt::Debug for StackText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&String::from_utf8_lossy(self.as_bytes()), f)
    }
}

impl fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        self.buf
            .get_mut(self.len..end)
            .ok_or(fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl StackText {
    /// `String(value)` in JavaScript, for the integers (and NaN, ±Infinity) that
    /// `parseInt` returns.
    pub(super) fn js_number(value: f64) -> Self {
        let mut text = Self {
            buf: [0; JS_NUMBER_MAX],
            len: 0,
        };
        // Every rendering below is at most 24 bytes, so writing cannot overflow.
        let _ = if value.is_nan() {
            text.write_str("NaN")
        } else if value.is_infinite() {
            text.write_str(if value > 0.0 { "Infinity" } else { "-Infinity" })
        } else if value == 0.0 {
            // Also -0, which JavaScript prints as "0".
            text.write_str("0")
        } else if value.abs() < 1e21 {
            // Both languages print the shortest round-trip digits, zero-padded.
            write!(text, "{value}")
        } else {
            text.write_exponential(value)
        };
        text
    }

    /// JavaScript's `1.2345e+21` form (Rust writes `1.2345e21`).
    pub(super) fn write_exponential(&mut self, value: f64) -> fmt::Result {
        let mut rust = Self {
            buf: [0; JS_NUMBER_MAX],
            len: 0,
        };
        write!(rust, "{value:e}")?;
        let rendered = std::str::from_utf8(rust.as_bytes()).map_err(|_| fmt::Error)?;
        let (mantissa, exponent) = rendered.split_once('e').ok_or(fmt::Error)?;
        write!(self, "{mantissa}e")?;
        if !exponent.starts_with('-') {
            self.write_str("+")?;
        }
        self.write_str(exponent)
    }

    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// JavaScript's `header.split(',')` and `item.split('=')`, keeping
    /// `kv[0]` and `kv[1]`: what [`entries`] must return.
    fn split_like_javascript(header: &[u8]) -> Vec<(&[u8], Option<&[u8]>)> {
        header
            .split(|&b| b == b',')
            .map(|item| {
                let mut kv = item.split(|&b| b == b'=');
                (kv.next().unwrap_or_default(), kv.next())
            })
            .collect()
    }

    /// The timestamp's text and value bits, the decoded candidates and
    /// whether more were left out.
    type PlainParse = (Vec<u8>, u64, Vec<[u8; TAG_LEN]>, bool);

    /// What [`ParsedHeader::parse`] must find: the same findings from a
    /// pass over [`split_like_javascript`], without the fast paths, every
    /// `v1` decoded on its own.
    fn parse_plainly(header: &[u8], plain_timestamp: bool) -> Result<PlainParse, VerifyError> {
        let mut found = Findings::new(header);
        let mut candidates = Vec::new();
        for (key, value) in split_like_javascript(header) {
            candidates.extend(found.entry(key, value));
        }
        let timestamp = found.checked(plain_timestamp)?;
        let overflow = candidates.len() > INLINE_CANDIDATES;
        candidates.truncate(INLINE_CANDIDATES);
        Ok((
            timestamp.text().to_vec(),
            timestamp.value.to_bits(),
            candidates,
            overflow,
        ))
    }

    /// Stripe-shaped headers: `t`, `v1` (often 64 hex digits), `v0` and
    /// stray entries, values with separators, digits, signs and case.
    fn stripe_shaped() -> impl Strategy<Value = Vec<u8>> {
        let digits = |alphabet: &[u8], len: std::ops::RangeInclusive<usize>| {
            proptest::collection::vec(proptest::sample::select(alphabet.to_vec()), len)
        };
        let entry =
            prop_oneof![
                "t=[0-9]{0,12}".prop_map(String::into_bytes),
                "t=[-+ 0-9a=]{0,14}".prop_map(String::into_bytes),
                // A well-formed signature, sometimes with more text after it.
                (digits(b"0123456789abcdef", 64..=64), "[0-9a-fA=]{0,3}")
                    .prop_map(|(hex, more)| [&b"v1="[..], &hex, more.as_bytes()].concat()),
                // Near one: other lengths, uppercase, separators inside.
                digits(b"0123456789abcdefA=,", 62..=66).prop_map(|h| [&b"v1="[..], &h].concat()),
                "(v1|v0|t|T|x)(=[0-9a-f=]{0,8})?".prop_map(String::into_bytes),
            ];
        // Mostly `,` between entries; sometimes `=`, so an entry runs on
        // into the next one's text.
        let separator = proptest::sample::select(b",,,=".to_vec());
        proptest::collection::vec((entry, separator), 0..6).prop_map(|entries| {
            let mut header = Vec::new();
            for (i, (entry, separator)) in entries.iter().enumerate() {
                if i > 0 {
                    header.push(*separator);
                }
                header.extend_from_slice(entry);
            }
            header
        })
    }

    proptest! {
        // Small inputs, cheap cases: many of them, so the rarer shapes (a
        // well-formed signature running on past a `=`) come up.
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn entries_split_as_javascript_does(header in prop_oneof![
            stripe_shaped(),
            proptest::collection::vec(proptest::sample::select(b"tv1=,0a".to_vec()), 0..24),
        ]) {
            let got: Vec<_> = entries(&header).collect();
            prop_assert_eq!(got, split_like_javascript(&header));
        }

        #[test]
        fn usual_timestamps_read_as_the_general_reading_does(value in prop_oneof![
            "[0-9]{0,17}",
            "[-+ 0-9a.]{0,18}",
        ]) {
            let fast = Timestamp::parse_int(Some(value.as_bytes()));
            let general = Timestamp::parse_int_generally(value.as_bytes());
            prop_assert_eq!(fast.value.to_bits(), general.value.to_bits());
            prop_assert_eq!(fast.text(), general.text());
        }

        #[test]
        fn the_header_parses_as_a_plain_pass_does(header in stripe_shaped(), plain in any::<bool>()) {
            let got = ParsedHeader::parse(&header, plain).map(|p| (
                p.timestamp.text().to_vec(),
                p.timestamp.value.to_bits(),
                p.candidates[..p.decoded].to_vec(),
                p.overflow,
            ));
            prop_assert_eq!(got, parse_plainly(&header, plain));
        }
    }

    fn text_of(value: &str) -> (f64, String) {
        let t = Timestamp::parse_int(Some(value.as_bytes()));
        (t.value, String::from_utf8(t.text().to_vec()).unwrap())
    }

    #[test]
    fn parse_int_follows_javascript() {
        assert_eq!(text_of("1700000000"), (1.7e9, "1700000000".into()));
        assert_eq!(text_of(" \t1700000000abc"), (1.7e9, "1700000000".into()));
        assert_eq!(text_of("+0017"), (17.0, "17".into()));
        assert_eq!(text_of("-5"), (-5.0, "-5".into()));
        assert_eq!(text_of("-0"), (-0.0, "0".into()));
        assert_eq!(text_of("0"), (0.0, "0".into()));
        assert_eq!(text_of("0x10"), (0.0, "0".into()));
        assert_eq!(text_of("12.9"), (12.0, "12".into()));
        assert_eq!(text_of("1e3"), (1.0, "1".into()));
        assert_eq!(
            text_of("\u{a0}7").1,
            "NaN",
            "UTF-8 NBSP is two Latin-1 chars"
        );
        assert_eq!(
            Timestamp::parse_int(Some(b"\xa07")).text(),
            b"7",
            "a Latin-1 NBSP byte is white space"
        );
        assert_eq!(text_of("1152921504606846976").1, "1152921504606847000");
        assert_eq!(text_of("123456789012345678901").1, "123456789012345680000");
        assert_eq!(text_of("1000000000000000000000").1, "1e+21");
        assert_eq!(
            text_of("-12345678901234567890123").1,
            "-1.2345678901234568e+22"
        );
        assert_eq!(text_of(&"9".repeat(400)).1, "Infinity");
        assert_eq!(text_of(&format!("-{}", "9".repeat(400))).1, "-Infinity");
        assert!(text_of("").0.is_nan());
        assert_eq!(text_of("abc").1, "NaN");
        assert_eq!(text_of("-").1, "NaN");
        assert_eq!(Timestamp::parse_int(None).text(), b"NaN");
    }

    #[test]
    fn entries_split_like_javascript() {
        let got: Vec<_> = entries(b"t=1=2,v1,,=x").collect();
        assert_eq!(
            got,
            vec![
                (&b"t"[..], Some(&b"1"[..])),
                (&b"v1"[..], None),
                (&b""[..], None),
                (&b""[..], Some(&b"x"[..])),
            ]
        );
    }

    #[test]
    fn datetime_only_for_representable_timestamps() {
        assert!(Timestamp::parse_int(Some(b"NaN")).as_datetime().is_none());
        assert!(Timestamp::parse_int(Some(b"1e400")).as_datetime().is_some());
        assert!(Timestamp::parse_int(Some(&[b'9'; 30]))
            .as_datetime()
            .is_none());
        assert_eq!(
            Timestamp::parse_int(Some(b"17"))
                .as_datetime()
                .map(OffsetDateTime::unix_timestamp),
            Some(17)
        );
    }

    #[test]
    fn timestamps_debug_as_the_text_they_sign() {
        let rendered = Timestamp::parse_int(Some(b"-5"));
        assert_eq!(format!("{:?}", rendered.text), r#"Rendered("-5")"#);
        let raw = Timestamp::parse_int(Some(b"17"));
        assert_eq!(format!("{:?}", raw.text), "Raw([49, 55])");
    }
}
