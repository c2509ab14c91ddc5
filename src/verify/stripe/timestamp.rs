//! The `t` of a `Stripe-Signature` header as stripe-node reads it: JavaScript's
//! `parseInt(value, 10)`, and the text `${timestamp}` renders for the signed
//! payload.

use std::fmt::{self, Write as _};

use time::OffsetDateTime;

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

    proptest! {
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
