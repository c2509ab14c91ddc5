//! The form parameters Twilio signs: decoded, sorted, duplicates dropped.

use std::borrow::Cow;
use std::hash::Hasher as _;

/// The query parameter that carries the SHA-256 of a JSON body.
pub(super) const BODY_SHA256: &str = "bodySHA256";

/// A form body's parameters, decoded as `application/x-www-form-urlencoded`
/// (`+` is a space, `%XX` a byte, invalid UTF-8 replaced as browsers and web
/// frameworks replace it), sorted by name then value (byte order, which is
/// Unicode code point order), with exactly repeated pairs kept once, as
/// twilio-python (`sorted(set(values))`) and twilio-node (`new Set(values)`,
/// sorted) sign them.
pub(super) struct Params<'a> {
    pairs: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

impl<'a> Params<'a> {
    /// Parses a form body.
    pub(super) fn parse(body: &'a [u8]) -> Self {
        let mut pairs: Vec<_> = pairs(body).collect();
        pairs.sort_unstable();
        pairs.dedup();
        Params { pairs }
    }

    /// No parameters (what a JSON body signed through `bodySHA256` adds).
    pub(super) fn none() -> Self {
        Params { pairs: Vec::new() }
    }

    /// Every name and value in signing order.
    pub(super) fn pieces(&self) -> impl Iterator<Item = &str> {
        self.pairs
            .iter()
            .flat_map(|(name, value)| [name.as_ref(), value.as_ref()])
    }

    /// The first (smallest) non-empty value of a parameter.
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        let start = self.pairs.partition_point(|(n, _)| n.as_ref() < name);
        self.pairs[start..]
            .iter()
            .take_while(|(n, _)| n.as_ref() == name)
            .map(|(_, v)| v.as_ref())
            .find(|v| !v.is_empty())
    }

    /// A 64-bit digest of the parameters as signed, written as 16 lowercase
    /// hex digits: equal for two bodies exactly when they carry the same
    /// parameters (however encoded or ordered), so it names a delivery
    /// without depending on its encoding.
    pub(super) fn digest(&self) -> String {
        let mut hasher = twox_hash::XxHash3_64::new();
        for piece in self.pieces() {
            // Length-prefixed, so that no two parameter lists feed the same bytes.
            hasher.write(&(piece.len() as u64).to_le_bytes());
            hasher.write(piece.as_bytes());
        }
        format!("{:016x}", hasher.finish())
    }
}

/// The pairs of a form body, exactly as `form_urlencoded::parse` yields them
/// (sequences split on `&`, empty ones skipped, name and value split on the
/// first `=`, `+` read as a space, then `%XX` decoded, then invalid UTF-8
/// replaced), but found with `memchr` and decoded in one pass: the
/// reference crate copies a value once per step, a cost every byte of a
/// large body pays. A property test holds the two equal on any input.
fn pairs(body: &[u8]) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    let mut rest = body;
    std::iter::from_fn(move || loop {
        if rest.is_empty() {
            return None;
        }
        let (sequence, after) = match memchr::memchr(b'&', rest) {
            Some(at) => (&rest[..at], &rest[at + 1..]),
            None => (rest, &[][..]),
        };
        rest = after;
        if sequence.is_empty() {
            continue;
        }
        let (name, value) = match memchr::memchr(b'=', sequence) {
            Some(at) => (&sequence[..at], &sequence[at + 1..]),
            None => (sequence, &[][..]),
        };
        return Some((decode(name), decode(value)));
    })
}

/// One name or value: `+` is a space, `%` and two hex digits (either case) a
/// byte, any other `%` itself; then invalid UTF-8 replaced with U+FFFD.
fn decode(raw: &[u8]) -> Cow<'_, str> {
    let Some(first) = memchr::memchr2(b'+', b'%', raw) else {
        return String::from_utf8_lossy(raw);
    };
    // Decoding never lengthens: write in place of a zeroed copy, then cut.
    let mut out = vec![0; raw.len()];
    out[..first].copy_from_slice(&raw[..first]);
    let (mut read, mut written) = (first, first);
    while let Some(&byte) = raw.get(read) {
        let (decoded, width) = match byte {
            b'+' => (b' ', 1),
            b'%' => match (hex(raw.get(read + 1)), hex(raw.get(read + 2))) {
                (Some(high), Some(low)) => (high << 4 | low, 3),
                _ => (b'%', 1),
            },
            other => (other, 1),
        };
        out[written] = decoded;
        written += 1;
        read += width;
    }
    out.truncate(written);
    match String::from_utf8(out) {
        Ok(text) => Cow::Owned(text),
        Err(err) => Cow::Owned(String::from_utf8_lossy(err.as_bytes()).into_owned()),
    }
}

/// The value of a hex digit.
fn hex(byte: Option<&u8>) -> Option<u8> {
    match byte? {
        digit @ b'0'..=b'9' => Some(digit - b'0'),
        letter @ b'a'..=b'f' => Some(letter - b'a' + 10),
        letter @ b'A'..=b'F' => Some(letter - b'A' + 10),
        _ => None,
    }
}

/// The value of the `bodySHA256` query parameter: `None` when absent or empty
/// (as twilio-go and twilio-python read it), `Err` when it is repeated.
pub(super) fn body_sha256(query: &str) -> Result<Option<Cow<'_, str>>, ()> {
    let mut found = None;
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if name == BODY_SHA256 {
            if found.is_some() {
                return Err(());
            }
            found = Some(value);
        }
    }
    Ok(found.filter(|v| !v.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Bytes rich in what form decoding treats specially.
    fn form_bytes() -> impl Strategy<Value = Vec<u8>> {
        let special = prop::sample::select(&b"&=+%%AaFf09gG\xff\xc3\xa9 "[..]);
        proptest::collection::vec(prop_oneof![special, any::<u8>()], 0..48)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        #[test]
        fn pairs_are_form_urlencodeds(body in form_bytes()) {
            let ours: Vec<_> = pairs(&body).collect();
            let reference: Vec<_> = form_urlencoded::parse(&body).collect();
            prop_assert_eq!(ours, reference);
        }
    }

    #[test]
    fn decoding_edge_cases_match_form_urlencoded() {
        for body in [
            &b""[..],
            b"&",
            b"&&a",
            b"a",
            b"=",
            b"==",
            b"a=b=c",
            b"%",
            b"%4",
            b"%4g",
            b"%41%4",
            b"+%2B+",
            b"%e9",
            b"%C3%A9",
            b"a=%ff%fe",
            b"\xff=\xfe",
            b"%%41",
            b"a+b=c+d&&e",
        ] {
            let ours: Vec<_> = pairs(body).collect();
            let reference: Vec<_> = form_urlencoded::parse(body).collect();
            assert_eq!(ours, reference, "{body:?}");
        }
    }

    #[test]
    fn params_are_decoded_sorted_and_deduplicated() {
        let params = Params::parse(b"b=2&a=x+y&Digits=5678&Digits=1234&Digits=1234&a=%41&c");
        assert_eq!(
            params.pieces().collect::<Vec<_>>(),
            ["Digits", "1234", "Digits", "5678", "a", "A", "a", "x y", "b", "2", "c", ""]
        );
        assert_eq!(params.get("a"), Some("A"));
        assert_eq!(params.get("Digits"), Some("1234"));
        assert_eq!(params.get("c"), None);
        assert_eq!(params.get("zz"), None);
    }

    #[test]
    fn the_digest_ignores_encoding_and_order_but_not_content() {
        let a = Params::parse(b"A=1&B=x+y").digest();
        assert_eq!(a, Params::parse(b"B=x%20y&A=%31").digest());
        assert_ne!(a, Params::parse(b"A=1&B=x+z").digest());
        assert_ne!(
            Params::parse(b"A=1B").digest(),
            Params::parse(b"A1=B").digest()
        );
        assert_eq!(a.len(), 16);
    }

    #[test]
    fn body_sha256_is_read_once() {
        assert_eq!(body_sha256("a=1&bodySHA256=ab"), Ok(Some("ab".into())));
        assert_eq!(body_sha256("bodySHA256="), Ok(None));
        assert_eq!(body_sha256("bodysha256=ab"), Ok(None));
        assert_eq!(body_sha256("bodySHA256=a&bodySHA256=a"), Err(()));
    }
}
