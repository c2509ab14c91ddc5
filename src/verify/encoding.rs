//! Decoding signatures from header text into stack arrays, exactly as strictly as
//! the providers' SDKs compare them.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::secret::TAG_LEN;

/// Length of a hex-encoded HMAC-SHA256 tag.
pub(crate) const HEX_LEN: usize = TAG_LEN * 2;

/// Length of a padded standard-base64 HMAC-SHA256 tag (`43` characters and one `=`).
pub(crate) const BASE64_LEN: usize = 44;

/// Decodes exactly 64 lowercase hex digits into a tag.
///
/// Uppercase digits are refused on purpose: stripe-node and octokit compare the
/// header text with their own lowercase hex digest, so an uppercase signature never
/// matches there either.
///
/// Eight digits at a time in a `u64` (SWAR): each byte is range-checked and
/// turned into its value with word-wide arithmetic, and the 16 pairs of a
/// word's nibbles are packed into four bytes, without a table lookup per
/// digit. `tests::decode_lower_hex_by_table` is the plain per-digit
/// version it is checked against.
pub(crate) fn decode_lower_hex(text: &[u8]) -> Option<[u8; TAG_LEN]> {
    if text.len() != HEX_LEN {
        return None;
    }
    let (words, _) = text.as_chunks::<8>();
    let mut tag = [0u8; TAG_LEN];
    let (outs, _) = tag.as_chunks_mut::<4>();
    let mut bad = 0u64;
    for (out, word) in outs.iter_mut().zip(words) {
        let (bytes, invalid) = hex_word(u64::from_le_bytes(*word));
        bad |= invalid;
        *out = bytes;
    }
    (bad == 0).then_some(tag)
}

/// A byte of ones in each lane of a `u64`.
const LANES: u64 = 0x0101_0101_0101_0101;
/// The high bit of each byte lane.
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// Eight hex digits (the first in the lowest byte) as four bytes, and a
/// word with a lane's high bit set for each byte that is not a lowercase hex
/// digit (0 when all are).
fn hex_word(digits: u64) -> ([u8; 4], u64) {
    // Seven bits per lane, so the sums below never carry into the next lane;
    // a byte with its high bit set is refused on its own.
    let low7 = digits & !HIGH_BITS;
    // The high bit of a lane is set where its byte is at least `lo`, or at
    // most `hi` (both below 0x80).
    let at_least = |lo: u8| low7.wrapping_add(LANES * u64::from(0x80 - lo)) & HIGH_BITS;
    let at_most = |hi: u8| (LANES * u64::from(0x80 + hi)).wrapping_sub(low7) & HIGH_BITS;
    let decimal = at_least(b'0') & at_most(b'9');
    let letter = at_least(b'a') & at_most(b'f');
    let valid = (decimal | letter) & !digits;
    // '0'..'9' is its low nibble; 'a'..'f' its low nibble (1..6) plus 9.
    let nibbles = (low7 & (LANES * 0x0f)) + (letter >> 7) * 9;
    // Each 16-bit lane: its first nibble (high) and its second (low) in one byte.
    let pairs = ((nibbles & 0x00ff_00ff_00ff_00ff) << 4) | ((nibbles >> 8) & 0x00ff_00ff_00ff_00ff);
    // The four bytes of the four lanes, side by side.
    let halves = (pairs | (pairs >> 8)) & 0x0000_ffff_0000_ffff;
    let packed = (halves | (halves >> 16)) as u32;
    (packed.to_le_bytes(), valid ^ HIGH_BITS)
}

/// Decodes the canonical padded standard-base64 form of a tag (44 characters).
///
/// Anything else (unpadded, URL-safe alphabet, non-zero trailing bits, whitespace)
/// is refused: Shopify's library compares the header text with its own canonical
/// base64 digest, so none of those forms could match there either.
///
/// Decoded here, four characters at a time through a table, rather than by the
/// `base64` engine (whose general decoder costs more than the tag's HMAC
/// compare); `tests::decode_base64_tag_by_engine` is the engine's
/// version it is checked against.
pub(crate) fn decode_base64_tag(text: &[u8]) -> Option<[u8; TAG_LEN]> {
    if text.len() != BASE64_LEN || text[BASE64_LEN - 1] != b'=' {
        return None;
    }
    let sextet = |c: u8| u32::from(BASE64_VALUES[usize::from(c)]);
    let (groups, _) = text.as_chunks::<4>();
    let mut tag = [0u8; TAG_LEN];
    let (outs, _) = tag.as_chunks_mut::<3>();
    let mut bad = 0u32;
    // Ten groups of four characters: 30 bytes.
    for (out, &[a, b, c, d]) in outs.iter_mut().zip(groups) {
        let (a, b, c, d) = (sextet(a), sextet(b), sextet(c), sextet(d));
        bad |= a | b | c | d;
        let [_, x, y, z] = ((a << 18) | (b << 12) | (c << 6) | d).to_be_bytes();
        *out = [x, y, z];
    }
    // Three characters and the `=`: 18 bits, the last two of them zero.
    let (a, b, c) = (sextet(text[40]), sextet(text[41]), sextet(text[42]));
    bad |= a | b | c;
    let bits = (a << 12) | (b << 6) | c;
    tag[30] = (bits >> 10) as u8;
    tag[31] = (bits >> 2) as u8;
    (bad & u32::from(INVALID) == 0 && bits & 0b11 == 0).then_some(tag)
}

/// The value of each character of the standard base64 alphabet, [`INVALID`]
/// for every other byte (the padding `=` included).
const BASE64_VALUES: [u8; 256] = {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < 64 {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// Marks a byte that is not a digit of its alphabet in [`BASE64_VALUES`].
const INVALID: u8 = 0x80;

/// Decodes the canonical padded standard-base64 form of an `N`-byte tag
/// (`N` at most 48), as strictly as [`decode_base64_tag`]: Twilio's helper
/// libraries compare the header text with their own base64 digest.
pub(crate) fn decode_base64_array<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    if N > 48 || text.len() != N.div_ceil(3) * 4 {
        return None;
    }
    let mut buf = [0u8; 50];
    let len = STANDARD.decode_slice(text, &mut buf).ok()?;
    if len != N {
        return None;
    }
    buf[..N].try_into().ok()
}

/// Lowercase hex of a tag, as the providers send it.
pub(crate) fn encode_lower_hex(tag: &[u8; TAG_LEN]) -> String {
    hex::encode(tag)
}

/// Padded standard base64 of a tag, as Shopify sends it.
pub(crate) fn encode_base64(tag: &[u8; TAG_LEN]) -> String {
    STANDARD.encode(tag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The plain decoder `decode_lower_hex` must agree with: one table
    /// lookup per digit.
    pub(super) fn decode_lower_hex_by_table(text: &[u8]) -> Option<[u8; TAG_LEN]> {
        if text.len() != HEX_LEN {
            return None;
        }
        let value = |digit: u8| match digit {
            b'0'..=b'9' => Some(digit - b'0'),
            b'a'..=b'f' => Some(digit - b'a' + 10),
            _ => None,
        };
        let mut tag = [0u8; TAG_LEN];
        for (byte, pair) in tag.iter_mut().zip(text.chunks_exact(2)) {
            *byte = (value(pair[0])? << 4) | value(pair[1])?;
        }
        Some(tag)
    }

    /// The `base64` engine's strict decoding, which `decode_base64_tag`
    /// must agree with.
    pub(super) fn decode_base64_tag_by_engine(text: &[u8]) -> Option<[u8; TAG_LEN]> {
        if text.len() != BASE64_LEN {
            return None;
        }
        let mut buf = [0u8; TAG_LEN + 1];
        let len = STANDARD.decode_slice(text, &mut buf).ok()?;
        if len != TAG_LEN {
            return None;
        }
        buf[..TAG_LEN].try_into().ok()
    }

    /// A byte: one of the alphabet's edges (`edges`) half of the time, any
    /// byte otherwise.
    fn near(edges: &'static [u8]) -> impl Strategy<Value = u8> {
        prop_oneof![proptest::sample::select(edges.to_vec()), any::<u8>()]
    }

    /// Puts each `(at, byte)` of `edits` at `at` modulo the text's length.
    fn edit(text: &mut [u8], edits: Vec<(usize, u8)>) {
        let len = text.len();
        for (at, byte) in edits {
            text[at % len] = byte;
        }
    }

    /// Hex text near the valid: lowercase digits with a few bytes replaced
    /// by any byte (a digit, a letter past `f`, uppercase, a separator, a
    /// high byte), and lengths around 64.
    fn hexish() -> impl Strategy<Value = Vec<u8>> {
        let digits = proptest::collection::vec(
            proptest::sample::select(b"0123456789abcdef".to_vec()),
            62..=66,
        );
        (
            digits,
            proptest::collection::vec(
                (any::<usize>(), near(b"/09:`afgAFG,= \x80\xb0\xe1\xff")),
                0..3,
            ),
        )
            .prop_map(|(mut text, edits)| {
                edit(&mut text, edits);
                text
            })
    }

    /// Base64 text near the valid: the encoding of random bytes with a few
    /// bytes replaced, the padding dropped or doubled.
    fn base64ish() -> impl Strategy<Value = Vec<u8>> {
        (
            any::<[u8; TAG_LEN]>(),
            proptest::collection::vec(
                (
                    prop_oneof![39..44usize, any::<usize>()],
                    near(b"+/=-_@AZ[`az{09:\x80\xab\xff"),
                ),
                0..3,
            ),
            0..4u8,
        )
            .prop_map(|(tag, edits, shape)| {
                let mut text = encode_base64(&tag).into_bytes();
                match shape {
                    1 => {
                        text.pop();
                    }
                    2 => text.push(b'='),
                    _ => {}
                }
                edit(&mut text, edits);
                text
            })
    }

    proptest! {
        #[test]
        fn swar_hex_agrees_with_the_table(text in hexish()) {
            prop_assert_eq!(decode_lower_hex(&text), decode_lower_hex_by_table(&text));
        }

        #[test]
        fn hex_of_any_bytes_agrees_with_the_table(text in proptest::collection::vec(any::<u8>(), 64)) {
            prop_assert_eq!(decode_lower_hex(&text), decode_lower_hex_by_table(&text));
        }

        #[test]
        fn hex_round_trips(tag in any::<[u8; TAG_LEN]>()) {
            prop_assert_eq!(decode_lower_hex(encode_lower_hex(&tag).as_bytes()), Some(tag));
        }

        #[test]
        fn base64_agrees_with_the_engine(text in base64ish()) {
            prop_assert_eq!(decode_base64_tag(&text), decode_base64_tag_by_engine(&text));
        }

        #[test]
        fn base64_of_any_bytes_agrees_with_the_engine(text in proptest::collection::vec(any::<u8>(), 44)) {
            prop_assert_eq!(decode_base64_tag(&text), decode_base64_tag_by_engine(&text));
        }

        #[test]
        fn base64_round_trips(tag in any::<[u8; TAG_LEN]>()) {
            prop_assert_eq!(decode_base64_tag(encode_base64(&tag).as_bytes()), Some(tag));
        }
    }

    #[test]
    fn every_last_character_of_a_base64_tag_agrees_with_the_engine() {
        // The 43rd character carries the last 4 bits and 2 that must be zero.
        let mut text = encode_base64(&[0xa5; TAG_LEN]).into_bytes();
        for byte in 0..=u8::MAX {
            for place in [0, 39, 40, 41, 42, 43] {
                let saved = text[place];
                text[place] = byte;
                assert_eq!(
                    decode_base64_tag(&text),
                    decode_base64_tag_by_engine(&text),
                    "byte {byte:#04x} at {place}"
                );
                text[place] = saved;
            }
        }
    }

    #[test]
    fn hex_is_lowercase_and_exact_length() {
        let tag = [0xabu8; TAG_LEN];
        let text = encode_lower_hex(&tag);
        assert_eq!(decode_lower_hex(text.as_bytes()), Some(tag));
        assert_eq!(decode_lower_hex(text.to_uppercase().as_bytes()), None);
        assert_eq!(decode_lower_hex(&text.as_bytes()[1..]), None);
        assert_eq!(decode_lower_hex(format!("{text}0").as_bytes()), None);
        assert_eq!(decode_lower_hex(&[b'g'; HEX_LEN]), None);
    }

    #[test]
    fn hex_accepts_exactly_the_sixteen_lowercase_digits_in_either_place() {
        let valid = encode_lower_hex(&[0x5a; TAG_LEN]).into_bytes();
        for byte in 0..=u8::MAX {
            let value = match byte {
                b'0'..=b'9' => Some(byte - b'0'),
                b'a'..=b'f' => Some(byte - b'a' + 10),
                _ => None,
            };
            for place in [0, 1, HEX_LEN - 1] {
                let mut text = valid.clone();
                text[place] = byte;
                let decoded = decode_lower_hex(&text);
                match value {
                    None => assert_eq!(decoded, None, "byte {byte:#04x} at {place}"),
                    Some(value) => {
                        let mut expected = [0x5a; TAG_LEN];
                        expected[place / 2] = if place % 2 == 0 {
                            (value << 4) | 0x0a
                        } else {
                            0x50 | value
                        };
                        assert_eq!(decoded, Some(expected), "byte {byte:#04x} at {place}");
                    }
                }
            }
        }
        assert_eq!(
            decode_lower_hex(b"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"),
            Some([
                0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
                0xee, 0xff, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb,
                0xcc, 0xdd, 0xee, 0xff,
            ])
        );
    }

    #[test]
    fn base64_is_exactly_44_characters() {
        let text = encode_base64(&[0x5a; TAG_LEN]);
        assert_eq!(decode_base64_tag(&text.as_bytes()[..43]), None);
        assert_eq!(decode_base64_tag(format!("{text}=").as_bytes()), None);
        assert_eq!(decode_base64_tag(format!("A{text}").as_bytes()), None);
        assert_eq!(decode_base64_tag(b""), None);
    }

    #[test]
    fn base64_arrays_are_exact_and_canonical() {
        let text = STANDARD.encode([0x5au8; 20]);
        assert_eq!(text.len(), 28);
        assert_eq!(decode_base64_array::<20>(text.as_bytes()), Some([0x5a; 20]));
        assert_eq!(decode_base64_array::<20>(&text.as_bytes()[..27]), None);
        assert_eq!(
            decode_base64_array::<20>(text.trim_end_matches('=').as_bytes()),
            None
        );
        assert_eq!(
            decode_base64_array::<20>(format!("{text}A").as_bytes()),
            None
        );
        // The same bits but a last character with trailing bits set.
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut loose = text.clone().into_bytes();
        let value = ALPHABET.iter().position(|&c| c == loose[26]).unwrap();
        loose[26] = ALPHABET[value ^ 1];
        assert_eq!(decode_base64_array::<20>(&loose), None);
        assert_eq!(
            decode_base64_array::<32>(encode_base64(&[7; 32]).as_bytes()),
            Some([7; 32])
        );
    }

    #[test]
    fn base64_is_canonical_and_padded() {
        let tag = [0x5au8; TAG_LEN];
        let text = encode_base64(&tag);
        assert_eq!(text.len(), BASE64_LEN);
        assert_eq!(decode_base64_tag(text.as_bytes()), Some(tag));
        assert_eq!(
            decode_base64_tag(text.trim_end_matches('=').as_bytes()),
            None
        );
        // Same bits, non-canonical last character (trailing bits set).
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut noncanonical = text.clone().into_bytes();
        let value = ALPHABET
            .iter()
            .position(|&c| c == noncanonical[42])
            .unwrap();
        noncanonical[42] = ALPHABET[value ^ 1];
        assert_ne!(noncanonical, text.as_bytes());
        assert_eq!(decode_base64_tag(&noncanonical), None);
        assert_eq!(decode_base64_tag(&[b'A'; BASE64_LEN]), None);
    }
}
