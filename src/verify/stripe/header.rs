//! The `Stripe-Signature` header, read exactly as stripe-node reads it: entries
//! split on `,` and `=`, the last `t` read like JavaScript's `parseInt` (see
//! [`timestamp`](super::timestamp)), every `v1` a candidate, decoded into stack
//! buffers.

use memchr::memchr;

use super::timestamp::Timestamp;
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
}
