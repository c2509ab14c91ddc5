//! The MACs of the [`Hmac`](super::Hmac) verifier: each secret keyed once,
//! tags compared in constant time, signatures decoded and encoded.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use hmac::{Hmac as HmacOf, Mac};
use sha1::Sha1;
use sha2::{Sha256, Sha512};
use subtle::{Choice, ConstantTimeEq};

use super::SignatureEncoding;
use crate::secret::SecretSet;

/// The hash under the HMAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Algorithm {
    Sha256,
    Sha512,
    /// Only through [`HmacBuilder::insecure_sha1`](super::HmacBuilder::insecure_sha1).
    Sha1,
}

impl Algorithm {
    /// The tag length in bytes.
    fn len(self) -> usize {
        match self {
            Algorithm::Sha256 => 32,
            Algorithm::Sha512 => 64,
            Algorithm::Sha1 => 20,
        }
    }
}

/// A tag of any supported length.
#[derive(Clone, Copy)]
pub(super) struct Tag {
    bytes: [u8; 64],
    len: usize,
}

impl Tag {
    fn from_slice(bytes: &[u8]) -> Self {
        let mut tag = Tag {
            bytes: [0; 64],
            len: bytes.len(),
        };
        tag.bytes[..bytes.len()].copy_from_slice(bytes);
        tag
    }

    fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// A secret keyed into its HMAC state.
#[derive(Clone)]
enum Keyed {
    Sha256(HmacOf<Sha256>),
    Sha512(HmacOf<Sha512>),
    Sha1(HmacOf<Sha1>),
}

/// Every secret of a set, keyed once for one algorithm.
#[derive(Clone)]
pub(super) struct KeyedSecrets {
    algorithm: Algorithm,
    keys: Vec<Keyed>,
}

impl KeyedSecrets {
    pub(super) fn new(algorithm: Algorithm, secrets: &SecretSet) -> Self {
        let keys = secrets
            .iter()
            .map(|secret| match algorithm {
                Algorithm::Sha256 => Keyed::Sha256(
                    Mac::new_from_slice(secret.expose()).expect("HMAC takes keys of any length"),
                ),
                Algorithm::Sha512 => Keyed::Sha512(
                    Mac::new_from_slice(secret.expose()).expect("HMAC takes keys of any length"),
                ),
                Algorithm::Sha1 => Keyed::Sha1(
                    Mac::new_from_slice(secret.expose()).expect("HMAC takes keys of any length"),
                ),
            })
            .collect();
        Self { algorithm, keys }
    }

    pub(super) fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The MAC over the concatenated parts with the secret at `index`.
    pub(super) fn tag(&self, index: usize, parts: &[&[u8]]) -> Option<Tag> {
        self.keys.get(index).map(|keyed| tag_with(keyed, parts))
    }

    /// The first secret whose MAC over `parts` equals any candidate, every
    /// candidate compared in constant time.
    pub(super) fn matching(&self, parts: &[&[u8]], candidates: &[Tag]) -> Option<usize> {
        if candidates.is_empty() {
            return None;
        }
        self.keys.iter().position(|keyed| {
            let tag = tag_with(keyed, parts);
            let mut found = Choice::from(0);
            for candidate in candidates {
                found |= tag.as_slice().ct_eq(candidate.as_slice());
            }
            bool::from(found)
        })
    }
}

fn tag_with(keyed: &Keyed, parts: &[&[u8]]) -> Tag {
    fn run<M: Mac + Clone>(mac: &M, parts: &[&[u8]]) -> Tag {
        let mut mac = mac.clone();
        for part in parts {
            mac.update(part);
        }
        Tag::from_slice(&mac.finalize().into_bytes())
    }
    match keyed {
        Keyed::Sha256(mac) => run(mac, parts),
        Keyed::Sha512(mac) => run(mac, parts),
        Keyed::Sha1(mac) => run(mac, parts),
    }
}

/// URL-safe base64, padding optional.
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decodes a signature of `algorithm`'s length; `None` for anything else.
pub(super) fn decode(
    text: &[u8],
    encoding: SignatureEncoding,
    algorithm: Algorithm,
) -> Option<Tag> {
    let want = algorithm.len();
    let mut buffer = [0u8; 64];
    let len = match encoding {
        SignatureEncoding::Hex => {
            if text.len() != want * 2 {
                return None;
            }
            hex::decode_to_slice(text, &mut buffer[..want]).ok()?;
            want
        }
        SignatureEncoding::Base64 => STANDARD.decode_slice(text, &mut buffer).ok()?,
        SignatureEncoding::Base64Url => URL_SAFE.decode_slice(text, &mut buffer).ok()?,
    };
    (len == want).then(|| Tag::from_slice(&buffer[..len]))
}

/// Encodes a tag as the header carries it (lowercase hex).
pub(super) fn encode(tag: &Tag, encoding: SignatureEncoding) -> String {
    match encoding {
        SignatureEncoding::Hex => hex::encode(tag.as_slice()),
        SignatureEncoding::Base64 => STANDARD.encode(tag.as_slice()),
        SignatureEncoding::Base64Url => URL_SAFE.encode(tag.as_slice()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_takes_exactly_the_algorithms_length() {
        let tag = [7u8; 32];
        for encoding in [
            SignatureEncoding::Hex,
            SignatureEncoding::Base64,
            SignatureEncoding::Base64Url,
        ] {
            let text = encode(&Tag::from_slice(&tag), encoding);
            let back = decode(text.as_bytes(), encoding, Algorithm::Sha256).unwrap();
            assert_eq!(back.as_slice(), tag);
            assert!(decode(text.as_bytes(), encoding, Algorithm::Sha512).is_none());
        }
        let upper = hex::encode_upper(tag);
        assert!(decode(upper.as_bytes(), SignatureEncoding::Hex, Algorithm::Sha256).is_some());
        // Unpadded URL-safe base64 is accepted; standard needs its padding.
        let unpadded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag);
        assert!(decode(
            unpadded.as_bytes(),
            SignatureEncoding::Base64Url,
            Algorithm::Sha256
        )
        .is_some());
        let bare = base64::engine::general_purpose::STANDARD_NO_PAD.encode(tag);
        assert!(decode(
            bare.as_bytes(),
            SignatureEncoding::Base64,
            Algorithm::Sha256
        )
        .is_none());
        let long = [1u8; 80];
        let text = STANDARD.encode(long);
        assert!(decode(
            text.as_bytes(),
            SignatureEncoding::Base64,
            Algorithm::Sha512
        )
        .is_none());
    }
}
