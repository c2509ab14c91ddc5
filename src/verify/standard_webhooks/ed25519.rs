//! `v1a` signatures: ed25519 over the same `{id}.{timestamp}.{body}`, checked
//! against the sender's `whpk_` public keys (the `ed25519` feature).

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine as _;
use ed25519_dalek::{Signature, VerifyingKey, PUBLIC_KEY_LENGTH, SIGNATURE_LENGTH};

use super::header::signatures;

/// The prefix of a serialised Standard Webhooks public key.
const PUBLIC_KEY_PREFIX: &[u8] = b"whpk_";

/// The signature identifier of ed25519 signatures.
pub(super) const V1A: &[u8] = b"v1a";

/// Length of the padded standard base64 of a 64-byte signature.
const SIGNATURE_BASE64_LEN: usize = 88;

/// The sender's public keys a verifier accepts `v1a` signatures from.
#[derive(Debug, Clone, Default)]
pub(super) struct PublicKeys {
    keys: Vec<VerifyingKey>,
}

impl PublicKeys {
    pub(super) fn push(&mut self, key: VerifyingKey) {
        self.keys.push(key);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Index of the first key under which some `v1a` signature of the header is
    /// a valid (strict) ed25519 signature of the concatenated `parts`.
    pub(super) fn matching(&self, parts: &[&[u8]], header: &[u8]) -> Option<usize> {
        if self.keys.is_empty() {
            return None;
        }
        let mut message: Option<Vec<u8>> = None;
        for (version, value) in signatures(header) {
            if version != V1A {
                continue;
            }
            let Some(signature) = decode_signature(value) else {
                continue;
            };
            // ed25519-dalek verifies strictly only over a contiguous message:
            // build it once, for the first well-formed `v1a` entry.
            let message = message.get_or_insert_with(|| parts.concat());
            if let Some(index) = self
                .keys
                .iter()
                .position(|key| key.verify_strict(message, &signature).is_ok())
            {
                return Some(index);
            }
        }
        None
    }
}

/// Decodes the canonical padded standard base64 of a 64-byte signature.
fn decode_signature(text: &[u8]) -> Option<Signature> {
    if text.len() != SIGNATURE_BASE64_LEN {
        return None;
    }
    // 88 characters may decode to up to 66 bytes before padding is accounted for.
    let mut buf = [0u8; SIGNATURE_LENGTH + 2];
    let len = STANDARD.decode_slice(text, &mut buf).ok()?;
    let bytes: [u8; SIGNATURE_LENGTH] = buf.get(..len)?.try_into().ok()?;
    Some(Signature::from_bytes(&bytes))
}

/// A public key from its serialised form: the standard base64 of its 32 bytes
/// after an optional `whpk_` prefix, with its `=` padding or without any.
///
/// # Errors
/// Why the text is not such a key.
pub(super) fn decode_public_key(text: &[u8]) -> Result<VerifyingKey, &'static str> {
    if text.first().is_some_and(u8::is_ascii_whitespace)
        || text.last().is_some_and(u8::is_ascii_whitespace)
    {
        return Err("the public key has surrounding whitespace");
    }
    let encoded = text.strip_prefix(PUBLIC_KEY_PREFIX).unwrap_or(text);
    let bytes = STANDARD
        .decode(encoded)
        .or_else(|_| STANDARD_NO_PAD.decode(encoded))
        .map_err(|_| "expected standard base64 after the optional `whpk_` prefix")?;
    let bytes: [u8; PUBLIC_KEY_LENGTH] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| "an ed25519 public key is 32 bytes")?;
    let key = VerifyingKey::from_bytes(&bytes)
        .map_err(|_| "the bytes are not an ed25519 public key (not a curve point)")?;
    if key.is_weak() {
        return Err("the public key is a weak (small-order) ed25519 key");
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_keys_decode_strictly() {
        // The RFC 8032 test 1 public key.
        let key = hex::decode("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
            .unwrap();
        let text = format!("whpk_{}", STANDARD.encode(&key));
        let decoded = decode_public_key(text.as_bytes()).unwrap();
        assert_eq!(decoded.as_bytes()[..], key[..]);
        assert!(decode_public_key(&text.as_bytes()[5..]).is_ok());
        let unpadded = format!("whpk_{}", STANDARD_NO_PAD.encode(&key));
        assert!(decode_public_key(unpadded.as_bytes()).is_ok());
        assert!(decode_public_key(format!("{text}\n").as_bytes()).is_err());
        assert!(decode_public_key(b"whpk_AAAA").is_err());
        // The identity point is a small-order (weak) key.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = format!("whpk_{}", STANDARD.encode(identity));
        assert_eq!(
            decode_public_key(weak.as_bytes()).unwrap_err(),
            "the public key is a weak (small-order) ed25519 key"
        );
    }

    #[test]
    fn signatures_decode_only_in_canonical_form() {
        let sig = [7u8; SIGNATURE_LENGTH];
        let text = STANDARD.encode(sig);
        assert_eq!(text.len(), SIGNATURE_BASE64_LEN);
        assert_eq!(
            decode_signature(text.as_bytes()).map(|s| s.to_bytes()),
            Some(sig)
        );
        assert!(decode_signature(STANDARD_NO_PAD.encode(sig).as_bytes()).is_none());
        assert!(decode_signature(&text.as_bytes()[1..]).is_none());
        assert!(decode_signature(STANDARD.encode([7u8; 65]).as_bytes()).is_none());
    }
}
