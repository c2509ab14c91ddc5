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
pub(crate) fn decode_lower_hex(text: &[u8]) -> Option<[u8; TAG_LEN]> {
    if text.len() != HEX_LEN {
        return None;
    }
    let mut tag = [0u8; TAG_LEN];
    // Branch-free over the digits: invalid ones set a high bit in `bad`.
    let mut bad = 0u8;
    for (byte, pair) in tag.iter_mut().zip(text.chunks_exact(2)) {
        let (high, low) = (
            LOWER_HEX[usize::from(pair[0])],
            LOWER_HEX[usize::from(pair[1])],
        );
        bad |= high | low;
        *byte = (high << 4) | (low & 0x0f);
    }
    (bad & INVALID == 0).then_some(tag)
}

/// Marks a byte that is not a lowercase hex digit in [`LOWER_HEX`].
const INVALID: u8 = 0x80;

/// The value of each lowercase hex digit, [`INVALID`] for every other byte.
const LOWER_HEX: [u8; 256] = {
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

/// Decodes the canonical padded standard-base64 form of a tag (44 characters).
///
/// Anything else (unpadded, URL-safe alphabet, non-zero trailing bits, whitespace)
/// is refused: Shopify's library compares the header text with its own canonical
/// base64 digest, so none of those forms could match there either.
pub(crate) fn decode_base64_tag(text: &[u8]) -> Option<[u8; TAG_LEN]> {
    if text.len() != BASE64_LEN {
        return None;
    }
    // 44 base64 characters may decode to up to 33 bytes before padding is accounted
    // for, and the engine wants room for that estimate.
    let mut buf = [0u8; TAG_LEN + 1];
    let len = STANDARD.decode_slice(text, &mut buf).ok()?;
    if len != TAG_LEN {
        return None;
    }
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&buf[..TAG_LEN]);
    Some(tag)
}

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
