//! Whether a body is a JSON document that serde_json accepts, without building it.
//!
//! [`check`] gives the verdict `serde_json::from_slice::<serde_json::Value>` gives,
//! for every input, without allocating: strings are UTF-8 (outside strings only
//! ASCII is valid JSON anyway), the grammar is RFC 8259's with serde_json's
//! limits (containers nested at most [`MAX_DEPTH`] deep, no control characters in
//! strings, `\u` escapes that name scalar values: a high surrogate must be
//! followed by an escaped low one), and numbers must be finite. Numbers whose
//! range is in question (an exponent, or more integer digits than a `u64` always
//! holds) are handed to serde_json itself, so its number parsing (including its
//! `float_roundtrip` and `arbitrary_precision` features, if a dependent enables
//! them) decides. `tests/identify_props.rs` holds the verdict equal to
//! serde_json's on generated hostile documents.
//!
//! Why not serde's `IgnoredAny`: serde_json skips with it more loosely than it
//! parses (no UTF-8 or surrogate check in skipped strings, no number range, no
//! depth limit), which is how such bodies used to get through identification.

use std::fmt;
use std::ops::Range;

#[cfg(test)]
mod realistic;
#[cfg(test)]
mod reference;

/// How deeply containers may nest: serde_json's recursion limit (it starts at 128
/// and refuses the container that would bring it to 0).
pub(crate) const MAX_DEPTH: u32 = 127;

/// Integer parts with at most this many digits and no exponent are always finite,
/// whatever the fraction: they are decided here, longer ones by serde_json.
const PLAIN_INTEGER_DIGITS: usize = 18;

/// Bytes tested at once, past the first chunk, for the end of a string's plain run.
const CHUNK: usize = 64;

/// Why a body is not a JSON document serde_json accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Invalid {
    /// Offset of the byte where the problem was found.
    pub(crate) offset: usize,
    /// What is wrong there.
    pub(crate) reason: &'static str,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.reason, self.offset)
    }
}

/// `Ok` exactly when serde_json parses `body` as one JSON document (a value,
/// optionally surrounded by white space).
pub(crate) fn check(body: &[u8]) -> Result<(), Invalid> {
    check_members(body, |_, _| {})
}

/// [`check`], calling `member(key, value)` on the way for each member of a
/// top-level object, in document order: `key` is the key's JSON text (quotes
/// included, escapes not decoded), `value` the byte range of the member's value.
/// What was reported means something only when the result is `Ok`.
pub(crate) fn check_members(
    body: &[u8],
    member: impl FnMut(&[u8], Range<usize>),
) -> Result<(), Invalid> {
    Scanner {
        bytes: body,
        pos: 0,
    }
    .document(member)
}

struct Scanner<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Scanner<'_> {
    fn fail<T>(&self, reason: &'static str) -> Result<T, Invalid> {
        Err(Invalid {
            offset: self.pos,
            reason,
        })
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    /// Consumes `byte` (after white space) or fails with `reason`.
    fn expect(&mut self, byte: u8, reason: &'static str) -> Result<(), Invalid> {
        self.skip_whitespace();
        if self.peek() != Some(byte) {
            return self.fail(reason);
        }
        self.pos += 1;
        Ok(())
    }

    /// An object key, its colon and the white space after it; returns the key's
    /// range, quotes included.
    fn key(&mut self) -> Result<Range<usize>, Invalid> {
        self.skip_whitespace();
        if self.peek() != Some(b'"') {
            return self.fail("expected a string key");
        }
        let start = self.pos;
        self.string()?;
        let key = start..self.pos;
        self.expect(b':', "expected `:` after an object key")?;
        self.skip_whitespace();
        Ok(key)
    }

    /// The whole document, iteratively: `open` holds one bit per open container
    /// (1 = object, 0 = array), innermost lowest; `MAX_DEPTH` bits fit in a u128.
    /// `pending` is the key and value start of the top-level member being read.
    fn document(mut self, mut member: impl FnMut(&[u8], Range<usize>)) -> Result<(), Invalid> {
        let mut open: u128 = 0;
        let mut depth: u32 = 0;
        let mut pending: Option<(Range<usize>, usize)> = None;
        loop {
            // A value starts here (after white space).
            self.skip_whitespace();
            match self.peek() {
                Some(bracket @ (b'{' | b'[')) => {
                    if depth == MAX_DEPTH {
                        return self.fail("containers nested deeper than 127 levels");
                    }
                    depth += 1;
                    let object = bracket == b'{';
                    open = (open << 1) | u128::from(object);
                    self.pos += 1;
                    self.skip_whitespace();
                    let close = if object { b'}' } else { b']' };
                    if self.peek() == Some(close) {
                        self.pos += 1;
                        depth -= 1;
                        open >>= 1;
                    } else if object {
                        let key = self.key()?;
                        if depth == 1 {
                            pending = Some((key, self.pos));
                        }
                        continue;
                    } else {
                        continue;
                    }
                }
                Some(b'"') => self.string()?,
                Some(b'-' | b'0'..=b'9') => self.number()?,
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                Some(_) => return self.fail("expected a value"),
                None => return self.fail("unexpected end of input, expected a value"),
            }
            // After a value: close containers until one continues with `,`.
            loop {
                if depth == 1 {
                    if let Some((key, start)) = pending.take() {
                        member(&self.bytes[key], start..self.pos);
                    }
                }
                self.skip_whitespace();
                if depth == 0 {
                    return match self.peek() {
                        None => Ok(()),
                        Some(_) => self.fail("trailing characters after the document"),
                    };
                }
                let object = open & 1 == 1;
                match (self.peek(), object) {
                    (Some(b','), _) => {
                        self.pos += 1;
                        if object {
                            let key = self.key()?;
                            if depth == 1 {
                                pending = Some((key, self.pos));
                            }
                        } else {
                            self.skip_whitespace();
                            if self.peek() == Some(b']') {
                                return self.fail("trailing comma");
                            }
                        }
                        break;
                    }
                    (Some(b'}'), true) | (Some(b']'), false) => {
                        self.pos += 1;
                        depth -= 1;
                        open >>= 1;
                    }
                    (Some(_), _) => return self.fail("expected `,` or the end of the container"),
                    (None, _) => return self.fail("unexpected end of input in a container"),
                }
            }
        }
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<(), Invalid> {
        if self.bytes.get(self.pos..self.pos + word.len()) != Some(word) {
            return self.fail("expected a value");
        }
        self.pos += word.len();
        Ok(())
    }

    /// A string, from its opening quote through its closing quote.
    ///
    /// Most strings of a payload are short and plain: when the first special byte
    /// of the 16 after the quote is the closing quote, that is the whole string.
    #[inline(always)]
    fn string(&mut self) -> Result<(), Invalid> {
        let start = self.pos + 1;
        let Some(head) = self
            .bytes
            .get(start..)
            .and_then(|rest| rest.first_chunk::<16>())
        else {
            self.pos = start;
            return self.string_rest();
        };
        let [lo, hi] = [&head[..8], &head[8..]].map(|word| {
            let mut lanes = [0u8; 8];
            lanes.copy_from_slice(word);
            u128::from(special_flags(u64::from_le_bytes(lanes)))
        });
        let flags = lo | hi << 64;
        if flags == 0 {
            self.pos = start + 16;
            return self.string_rest();
        }
        // The lowest flag is exact, and the bytes before it are plain.
        let at = flags.trailing_zeros() as usize / 8;
        self.pos = start + at;
        if head.get(at) == Some(&b'"') {
            self.pos += 1;
            return Ok(());
        }
        self.string_rest()
    }

    /// The rest of a string from `pos`, inside it, through its closing quote.
    #[inline(never)]
    fn string_rest(&mut self) -> Result<(), Invalid> {
        loop {
            let Some(run) = plain_run(&self.bytes[self.pos..]) else {
                self.pos = self.bytes.len();
                return self.fail("unexpected end of input in a string");
            };
            self.pos += run;
            match self.bytes[self.pos] {
                b'"' => {
                    self.pos += 1;
                    return Ok(());
                }
                b'\\' => {
                    self.pos += 1;
                    self.escape()?;
                }
                0x80.. => self.non_ascii()?,
                _ => return self.fail("control character in a string"),
            }
        }
    }

    /// A run of non-ASCII bytes inside a string, which must be UTF-8. An ASCII
    /// byte is never part of a multi-byte sequence, so checking each maximal
    /// non-ASCII run checks the whole string.
    fn non_ascii(&mut self) -> Result<(), Invalid> {
        let rest = &self.bytes[self.pos..];
        let len = rest.iter().position(u8::is_ascii).unwrap_or(rest.len());
        if let Err(e) = std::str::from_utf8(&rest[..len]) {
            self.pos += e.valid_up_to();
            return self.fail("invalid UTF-8 in a string");
        }
        self.pos += len;
        Ok(())
    }

    /// An escape, after its backslash.
    fn escape(&mut self) -> Result<(), Invalid> {
        match self.peek() {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.pos += 1;
                Ok(())
            }
            Some(b'u') => {
                self.pos += 1;
                match self.hex4()? {
                    0xDC00..=0xDFFF => self.fail("lone low surrogate in a \\u escape"),
                    0xD800..=0xDBFF => {
                        if self.bytes.get(self.pos..self.pos + 2) != Some(b"\\u") {
                            return self.fail("high surrogate not followed by a \\u escape");
                        }
                        self.pos += 2;
                        match self.hex4()? {
                            0xDC00..=0xDFFF => Ok(()),
                            _ => self.fail("high surrogate not followed by a low surrogate"),
                        }
                    }
                    _ => Ok(()),
                }
            }
            _ => self.fail("invalid escape"),
        }
    }

    fn hex4(&mut self) -> Result<u16, Invalid> {
        let Some(digits) = self.bytes.get(self.pos..self.pos + 4) else {
            return self.fail("unexpected end of input in a \\u escape");
        };
        let mut value = 0u16;
        for &digit in digits {
            let nibble = match digit {
                b'0'..=b'9' => digit - b'0',
                b'a'..=b'f' => digit - b'a' + 10,
                b'A'..=b'F' => digit - b'A' + 10,
                _ => return self.fail("invalid \\u escape"),
            };
            value = (value << 4) | u16::from(nibble);
        }
        self.pos += 4;
        Ok(value)
    }

    /// A number. Its grammar is checked here; whether one with an exponent or a
    /// long integer part is in range, serde_json decides.
    ///
    /// Most numbers of a payload are short non-negative integers (amounts,
    /// counts, timestamps): those end here without the general routine.
    #[inline(always)]
    fn number(&mut self) -> Result<(), Invalid> {
        let rest = self.bytes.get(self.pos..).unwrap_or_default();
        let digits = rest
            .iter()
            .take(PLAIN_INTEGER_DIGITS + 1)
            .take_while(|b| b.is_ascii_digit())
            .count();
        let plain = (1..=PLAIN_INTEGER_DIGITS).contains(&digits)
            && (digits == 1 || rest.first() != Some(&b'0'))
            && !matches!(rest.get(digits), Some(b'.' | b'e' | b'E'));
        if plain {
            self.pos += digits;
            return Ok(());
        }
        self.number_rest()
    }

    /// [`Self::number`] in general.
    #[inline(never)]
    fn number_rest(&mut self) -> Result<(), Invalid> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let integer = self.digits();
        if integer == 0 {
            return self.fail("invalid number");
        }
        // A leading zero stands alone: what follows `0` is read as the next token.
        if self.bytes[self.pos - integer] == b'0' && integer > 1 {
            return self.fail("invalid number: leading zero");
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return self.fail("invalid number: no digit after the decimal point");
            }
        }
        let mut plain = integer <= PLAIN_INTEGER_DIGITS;
        if let Some(b'e' | b'E') = self.peek() {
            plain = false;
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return self.fail("invalid number: no digit in the exponent");
            }
        }
        if plain {
            return Ok(());
        }
        match serde_json::from_slice::<serde_json::Value>(&self.bytes[start..self.pos]) {
            Ok(_) => Ok(()),
            Err(_) => Err(Invalid {
                offset: start,
                reason: "number out of range",
            }),
        }
    }

    fn digits(&mut self) -> usize {
        let count = self.bytes[self.pos..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        self.pos += count;
        count
    }
}

/// Whether a byte ends a string's plain run: a quote, a backslash, a control
/// character or a non-ASCII byte (`< 0x20` as a signed byte covers both of the
/// last two).
fn is_special(byte: u8) -> bool {
    (byte as i8) < 0x20 || byte == b'"' || byte == b'\\'
}

/// Length of the run of plain ASCII bytes before the first quote, backslash,
/// control character or non-ASCII byte; `None` when there is none.
fn plain_run(bytes: &[u8]) -> Option<usize> {
    // Most strings in a payload are short: a word at a time first.
    let head = bytes.len().min(CHUNK);
    if let Some(found) = words(&bytes[..head]) {
        return Some(found);
    }
    let mut offset = head;
    while let Some(chunk) = bytes.get(offset..offset + CHUNK) {
        // No early exit inside a chunk, so the compiler tests it in SIMD lanes.
        if chunk
            .iter()
            .fold(false, |hit, &byte| hit | is_special(byte))
        {
            return chunk
                .iter()
                .position(|&b| is_special(b))
                .map(|i| offset + i);
        }
        offset += CHUNK;
    }
    words(&bytes[offset..]).map(|i| offset + i)
}

/// The high bit of each byte of `x` (little-endian) that [`is_special`] flags,
/// and maybe of later bytes: the lowest flag is exact (a borrow only ever starts
/// at a flagged byte).
#[inline(always)]
fn special_flags(x: u64) -> u64 {
    const ONES: u64 = u64::MAX / 255;
    const HIGH: u64 = ONES << 7;
    let control_or_high = x.wrapping_sub(ONES * 0x20) | x;
    let quote = x ^ (ONES * u64::from(b'"'));
    let backslash = x ^ (ONES * u64::from(b'\\'));
    let zero_byte = |v: u64| v.wrapping_sub(ONES) & !v;
    (control_or_high | zero_byte(quote) | zero_byte(backslash)) & HIGH
}

/// [`plain_run`] eight bytes at a time in a `u64`: for each test, the lowest
/// flagged byte is exact (a borrow only ever starts at a flagged byte).
fn words(bytes: &[u8]) -> Option<usize> {
    let mut words = bytes.chunks_exact(8);
    let mut offset = 0;
    for word in &mut words {
        let mut lanes = [0u8; 8];
        lanes.copy_from_slice(word);
        let flags = special_flags(u64::from_le_bytes(lanes));
        if flags != 0 {
            return Some(offset + flags.trailing_zeros() as usize / 8);
        }
        offset += 8;
    }
    words
        .remainder()
        .iter()
        .position(|&b| is_special(b))
        .map(|i| offset + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &[u8]) -> bool {
        check(body).is_ok()
    }

    #[test]
    fn accepts_what_serde_json_accepts() {
        for body in [
            &b"{}"[..],
            b" [] ",
            b"0",
            b"-0.5e-3",
            b"\"\\ud83d\\ude00\\u00e9\\n\"",
            b"{\"a\":[1,{\"b\":null}],\"c\":true,\"d\":false}",
            "\"caf\u{e9}\"".as_bytes(),
            b"1e-400",
            b"123456789012345678901234567890",
        ] {
            assert!(ok(body), "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn refuses_what_serde_json_refuses() {
        for body in [
            &b""[..],
            b"{",
            b"{\"a\":1,}",
            b"[1,]",
            b"01",
            b"1.",
            b"-",
            b"1e",
            b"1e400",
            b"\"\\ud800\"",
            b"\"\\udc00\"",
            b"\"\\ud800\\u0041\"",
            b"\"\\x\"",
            b"\"a\x01\"",
            b"\"\xff\"",
            b"{\"a\" 1}",
            b"nul",
            b"{} x",
            b"[1 2]",
        ] {
            assert!(!ok(body), "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn depth_limit_is_serde_jsons() {
        let nested = |n: usize| [vec![b'['; n], vec![b']'; n]].concat();
        assert!(ok(&nested(MAX_DEPTH as usize)));
        assert!(!ok(&nested(MAX_DEPTH as usize + 1)));
        for n in [MAX_DEPTH as usize, MAX_DEPTH as usize + 1] {
            assert_eq!(
                ok(&nested(n)),
                serde_json::from_slice::<serde_json::Value>(&nested(n)).is_ok()
            );
        }
    }

    #[test]
    fn top_level_members_are_reported_in_order_with_their_value_spans() {
        let body =
            br#" { "id" : "evt_1" , "data":{"id":[1,{}]},"e":{}, "i\u0064":[ ] ,"n":-1.5e3} "#;
        let mut seen = Vec::new();
        check_members(body, |key, value| {
            seen.push((
                String::from_utf8(key.to_vec()).unwrap(),
                String::from_utf8(body[value].to_vec()).unwrap(),
            ))
        })
        .unwrap();
        let seen: Vec<(&str, &str)> = seen.iter().map(|(k, v)| (&k[..], &v[..])).collect();
        assert_eq!(
            seen,
            [
                ("\"id\"", "\"evt_1\""),
                ("\"data\"", r#"{"id":[1,{}]}"#),
                ("\"e\"", "{}"),
                ("\"i\\u0064\"", "[ ]"),
                ("\"n\"", "-1.5e3"),
            ]
        );
        let mut calls = 0;
        check_members(br#"[{"id":1}]"#, |_, _| calls += 1).unwrap();
        assert_eq!(calls, 0, "only the members of a top-level object");
    }

    #[test]
    fn plain_run_finds_the_first_special_byte() {
        let mut long = vec![b'x'; 100];
        assert_eq!(plain_run(&long), None);
        long[37] = b'"';
        long[60] = b'\\';
        assert_eq!(plain_run(&long), Some(37));
        assert_eq!(plain_run(b"ab\x1fc"), Some(2));
        assert_eq!(plain_run(b""), None);
        for at in [0, 7, 8, 63, 64, 65, 99] {
            for special in [b'"', b'\\', 0x00, 0x1f, 0x80, 0xff] {
                let mut bytes = vec![b' '; 100];
                bytes[at] = special;
                bytes[99] = b'"';
                assert_eq!(plain_run(&bytes), Some(at), "{special:#x} at {at}");
            }
        }
        assert_eq!(plain_run(&[0x20, 0x7f, b'~', b'!']), None);
    }
}
