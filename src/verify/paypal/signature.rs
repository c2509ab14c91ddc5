//! The signed message, `{transmission_id}|{transmission_time}|{webhook_id}|{crc32}`,
//! and the RSA-SHA256 check of `paypal-transmission-sig` over it.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rsa::sha2::{Digest, Sha256};
use rsa::{Pkcs1v15Sign, PublicKey};

/// The longest signature accepted: that of a 4096-bit key.
pub(super) const MAX_SIGNATURE: usize = 512;

/// A decoded `paypal-transmission-sig`, on the stack.
pub(super) struct Signature {
    bytes: [u8; MAX_SIGNATURE + 2],
    len: usize,
}

impl Signature {
    /// Decodes the header's padded standard base64; `None` when it is not
    /// that, or longer than [`MAX_SIGNATURE`] bytes.
    pub(super) fn decode(text: &[u8]) -> Option<Self> {
        if text.is_empty() || text.len() > MAX_SIGNATURE.div_ceil(3) * 4 {
            return None;
        }
        let mut bytes = [0u8; MAX_SIGNATURE + 2];
        let len = STANDARD.decode_slice(text, &mut bytes).ok()?;
        (len <= MAX_SIGNATURE).then_some(Self { bytes, len })
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// The decimal text of a CRC-32, on the stack.
pub(super) struct Crc32Text {
    digits: [u8; 10],
    start: usize,
}

impl Crc32Text {
    /// The IEEE CRC-32 of `body` as PayPal's SDKs write it: an unsigned
    /// decimal integer.
    pub(super) fn of(body: &[u8]) -> Self {
        let mut value = crc32fast::hash(body);
        let mut digits = [0u8; 10];
        let mut start = digits.len();
        loop {
            start -= 1;
            // `value % 10` is a single digit.
            digits[start] = b'0' + (value % 10) as u8;
            value /= 10;
            if value == 0 {
                break;
            }
        }
        Self { digits, start }
    }

    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.digits[self.start..]
    }
}

/// SHA-256 of the signed message.
pub(super) fn message_digest(
    transmission_id: &[u8],
    transmission_time: &[u8],
    webhook_id: &[u8],
    crc: &Crc32Text,
) -> rsa::sha2::digest::Output<Sha256> {
    let mut hash = Sha256::new();
    for part in [
        transmission_id,
        b"|",
        transmission_time,
        b"|",
        webhook_id,
        b"|",
        crc.as_bytes(),
    ] {
        hash.update(part);
    }
    hash.finalize()
}

/// Whether `signature` is `key`'s RSA PKCS#1 v1.5 signature of `digest`.
pub(super) fn holds(key: &PublicKey, digest: &[u8], signature: &Signature) -> bool {
    key.verify(Pkcs1v15Sign::new::<Sha256>(), digest, signature.as_bytes())
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::{Crc32Text, Signature};

    #[test]
    fn crc32_is_unsigned_decimal() {
        assert_eq!(Crc32Text::of(b"").as_bytes(), b"0");
        // The CRC-32 check value.
        assert_eq!(Crc32Text::of(b"123456789").as_bytes(), b"3421780262");
        assert_eq!(
            Crc32Text::of(b"The quick brown fox jumps over the lazy dog").as_bytes(),
            b"1095738169"
        );
    }

    #[test]
    fn signatures_decode_strictly() {
        assert!(Signature::decode(b"").is_none());
        assert!(Signature::decode(b"not base64!").is_none());
        assert!(Signature::decode(b"QUJD").is_some());
        assert!(Signature::decode(&[b'A'; 700]).is_none());
    }
}
