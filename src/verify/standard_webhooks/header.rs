//! The three headers of a Standard Webhooks delivery, found in one pass, with
//! the `svix-` name of each preferred over its `webhook-` name (as the Svix
//! libraries read them), and the signature list split as the official Rust
//! libraries split it.

use memchr::memchr;

use crate::headers::{as_text, Headers};
use crate::verify::VerifyError;

/// One of the three signed headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Field {
    Id,
    Timestamp,
    Signature,
}

impl Field {
    /// The `webhook-` (Standard Webhooks) and `svix-` (Svix) names of the field.
    pub(super) const fn names(self) -> (&'static str, &'static str) {
        match self {
            Field::Id => ("webhook-id", "svix-id"),
            Field::Timestamp => ("webhook-timestamp", "svix-timestamp"),
            Field::Signature => ("webhook-signature", "svix-signature"),
        }
    }

    /// The name to read in `headers`: the `svix-` one when a header of that
    /// name is present (even empty or repeated), the `webhook-` one otherwise.
    pub(super) fn name_in(self, headers: &Headers) -> &'static str {
        let (standard, svix) = self.names();
        if headers.contains(svix) {
            svix
        } else {
            standard
        }
    }
}

/// What one pass over the headers found of one header name.
#[derive(Debug, Clone, Copy, Default)]
struct Slot<'h> {
    value: Option<&'h [u8]>,
    repeated: bool,
}

impl<'h> Slot<'h> {
    fn put(&mut self, value: &'h [u8]) {
        if self.value.is_some() {
            self.repeated = true;
        } else {
            self.value = Some(value);
        }
    }
}

/// The values of the six header names, found in one pass over the headers
/// (a delivery carries a dozen headers; six lookups would scan them six times).
#[derive(Debug, Default)]
pub(super) struct Found<'h> {
    /// Indexed by `Field as usize * 2`, plus one for the `svix-` name.
    slots: [Slot<'h>; 6],
}

impl<'h> Found<'h> {
    pub(super) fn scan(headers: &'h Headers) -> Self {
        let mut found = Self::default();
        for (name, value) in headers.iter() {
            // Dispatch on the length first: most headers match none of the six.
            let slot = match name.len() {
                7 if name.eq_ignore_ascii_case("svix-id") => 1,
                10 if name.eq_ignore_ascii_case("webhook-id") => 0,
                14 if name.eq_ignore_ascii_case("svix-timestamp") => 3,
                14 if name.eq_ignore_ascii_case("svix-signature") => 5,
                17 if name.eq_ignore_ascii_case("webhook-timestamp") => 2,
                17 if name.eq_ignore_ascii_case("webhook-signature") => 4,
                _ => continue,
            };
            found.slots[slot].put(value);
        }
        found
    }

    /// The field's value as text, from its `svix-` header when one is present,
    /// else from its `webhook-` header: absent or empty is
    /// [`VerifyError::MissingHeader`] (the official libraries' "Missing required
    /// headers"), a repeated header [`VerifyError::RepeatedHeader`], a value that is
    /// not printable text [`VerifyError::MalformedHeader`].
    pub(super) fn text(&self, field: Field) -> Result<(&'static str, &'h str), VerifyError> {
        let (standard, svix) = field.names();
        let base = field as usize * 2;
        let (name, slot) = if self.slots[base + 1].value.is_some() {
            (svix, self.slots[base + 1])
        } else {
            (standard, self.slots[base])
        };
        if slot.repeated {
            return Err(VerifyError::RepeatedHeader(name));
        }
        match slot.value {
            None | Some(b"") => Err(VerifyError::MissingHeader(name)),
            Some(bytes) => {
                as_text(bytes)
                    .map(|text| (name, text))
                    .ok_or(VerifyError::MalformedHeader {
                        header: name,
                        reason: "the value is not printable text",
                    })
            }
        }
    }
}

/// Reads the timestamp header as the official Rust libraries (`str::parse::<i64>`)
/// and Go libraries (`strconv.ParseInt(s, 10, 64)`) do: an optional `+` or `-`,
/// then one or more ASCII digits, within `i64`; no white space, no fraction.
pub(super) fn parse_timestamp(header: &'static str, text: &str) -> Result<i64, VerifyError> {
    text.parse::<i64>()
        .map_err(|_| VerifyError::MalformedHeader {
            header,
            reason: "expected an integer unix timestamp in seconds",
        })
}

/// Longest decimal rendering of an `i64`: `-9223372036854775808`.
const I64_TEXT_MAX: usize = 20;

/// The decimal text of a timestamp as the libraries sign it (`{timestamp}` of
/// the parsed integer: no sign for positive values, no leading zeros), rendered
/// on the stack.
#[derive(Debug, Clone, Copy)]
pub(super) struct Decimal {
    buf: [u8; I64_TEXT_MAX],
    start: usize,
}

impl Decimal {
    pub(super) fn new(value: i64) -> Self {
        let mut buf = [0u8; I64_TEXT_MAX];
        let mut start = I64_TEXT_MAX;
        let mut rest = value.unsigned_abs();
        loop {
            start -= 1;
            // `rest % 10` is below 10, so the cast is exact.
            buf[start] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        if value < 0 {
            start -= 1;
            buf[start] = b'-';
        }
        Self { buf, start }
    }

    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

/// `(version, value)` of each space-separated entry of a signature header, split
/// at the entry's first `,` (Rust's `split_once(',')`); entries without a `,`
/// (including the empty ones between two spaces) are skipped, as the official
/// Rust and Go libraries skip them.
pub(super) fn signatures(header: &[u8]) -> Signatures<'_> {
    Signatures { rest: Some(header) }
}

/// Iterator of [`signatures`], searching separators with `memchr` (vectorised).
pub(super) struct Signatures<'h> {
    /// What follows the last space; `None` once the last entry was read.
    rest: Option<&'h [u8]>,
}

impl<'h> Iterator for Signatures<'h> {
    type Item = (&'h [u8], &'h [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let rest = self.rest?;
            let entry = match memchr(b' ', rest) {
                Some(space) => {
                    self.rest = Some(&rest[space + 1..]);
                    &rest[..space]
                }
                None => {
                    self.rest = None;
                    rest
                }
            };
            if let Some(comma) = memchr(b',', entry) {
                return Some((&entry[..comma], &entry[comma + 1..]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_render_like_display() {
        for value in [0, 7, -7, 10, 1_614_265_330, i64::MAX, i64::MIN, -1] {
            assert_eq!(Decimal::new(value).as_bytes(), value.to_string().as_bytes());
        }
    }

    #[test]
    fn timestamps_parse_like_rust_and_go() {
        let parse = |text: &str| parse_timestamp("webhook-timestamp", text).ok();
        assert_eq!(parse("1614265330"), Some(1_614_265_330));
        assert_eq!(parse("+0017"), Some(17));
        assert_eq!(parse("-5"), Some(-5));
        for bad in [
            "",
            " 1",
            "1 ",
            "1.5",
            "1e9",
            "0x10",
            "+",
            "-",
            "9223372036854775808",
            "1_000",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn signature_entries_split_at_spaces_and_the_first_comma() {
        let got: Vec<_> = signatures(b"v1,a  v1a,b,c x v2, ,d").collect();
        assert_eq!(
            got,
            vec![
                (&b"v1"[..], &b"a"[..]),
                (&b"v1a"[..], &b"b,c"[..]),
                (&b"v2"[..], &b""[..]),
                (&b""[..], &b"d"[..]),
            ]
        );
        assert_eq!(signatures(b"").count(), 0);
    }
}
