//! The scanner as it was before its fast paths (issue 13), kept to hold the
//! fast one to exactly its results: verdict, error offset and reason, and the
//! members reported.

use std::ops::Range;

use super::{Invalid, MAX_DEPTH};

const PLAIN_INTEGER_DIGITS: usize = 18;
const CHUNK: usize = 64;

/// The old `check_members`: the reported members, and the result.
pub(super) fn check_members(
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
    fn string(&mut self) -> Result<(), Invalid> {
        self.pos += 1;
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
    fn number(&mut self) -> Result<(), Invalid> {
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

/// [`plain_run`] eight bytes at a time in a `u64`: for each test, the lowest
/// flagged byte is exact (a borrow only ever starts at a flagged byte).
fn words(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::MAX / 255;
    const HIGH: u64 = ONES << 7;
    let mut words = bytes.chunks_exact(8);
    let mut offset = 0;
    for word in &mut words {
        let mut lanes = [0u8; 8];
        lanes.copy_from_slice(word);
        let x = u64::from_le_bytes(lanes);
        let control_or_high = x.wrapping_sub(ONES * 0x20) | x;
        let quote = x ^ (ONES * u64::from(b'"'));
        let backslash = x ^ (ONES * u64::from(b'\\'));
        let zero_byte = |v: u64| v.wrapping_sub(ONES) & !v;
        let flags = (control_or_high | zero_byte(quote) | zero_byte(backslash)) & HIGH;
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
