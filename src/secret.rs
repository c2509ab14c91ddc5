//! Signing secrets that never print, and secret sets for rotation.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};
use zeroize::Zeroizing;

type HmacSha256 = Hmac<Sha256>;

/// Length in bytes of an HMAC-SHA256 tag.
pub(crate) const TAG_LEN: usize = 32;

/// A webhook signing secret.
///
/// The bytes are zeroized when the value is dropped, and neither `Debug` nor
/// `Display` ever shows them. The secret is used exactly as given: Stripe's
/// `whsec_…` string, for instance, is the key itself (prefix included).
///
/// ```
/// use hookgate::Secret;
/// let secret = Secret::new("whsec_very_secret");
/// assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
/// assert_eq!(secret.to_string(), "<redacted>");
/// ```
#[derive(Clone)]
pub struct Secret {
    bytes: Zeroizing<Vec<u8>>,
}

impl Secret {
    /// Wraps the given bytes as a secret.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self {
            bytes: Zeroizing::new(bytes.into()),
        }
    }

    /// The secret's bytes. Use only to compute a MAC; never log them.
    pub fn expose(&self) -> &[u8] {
        &self.bytes
    }

    /// Number of bytes in the secret.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the secret has no bytes at all (almost certainly a configuration mistake).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Whether the secret starts or ends with ASCII whitespace, a common copy-paste
    /// mistake (a trailing newline from a file or an environment variable).
    pub fn has_surrounding_whitespace(&self) -> bool {
        matches!(self.bytes.first(), Some(b) if b.is_ascii_whitespace())
            || matches!(self.bytes.last(), Some(b) if b.is_ascii_whitespace())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value.as_bytes().to_vec())
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self::new(value.into_bytes())
    }
}

impl From<&[u8]> for Secret {
    fn from(value: &[u8]) -> Self {
        Self::new(value.to_vec())
    }
}

impl From<Vec<u8>> for Secret {
    fn from(value: Vec<u8>) -> Self {
        Self::new(value)
    }
}

/// One secret with its MAC state keyed once, so a verification clones a keyed
/// state instead of re-deriving the key block on every call.
#[derive(Clone)]
struct KeyedSecret {
    secret: Secret,
    mac: HmacSha256,
}

/// The secrets a verifier accepts: any one of them may match.
///
/// Keep the old and the new secret in the set while a provider rolls a secret,
/// then drop the old one. The set is never empty.
///
/// Each secret is keyed into an HMAC state once, when it is added. The secret's
/// own bytes are zeroized on drop; the keyed HMAC state (the hashed inner and
/// outer key blocks, from which tags can be computed) is not, because the `hmac`
/// crate offers no way to wipe it without `unsafe`. Treat a process memory dump
/// as exposing the secret.
///
/// ```
/// use hookgate::SecretSet;
/// let set = SecretSet::new("new-secret").with("old-secret");
/// assert_eq!(set.len(), 2);
/// assert_eq!(format!("{set:?}"), "SecretSet { secrets: 2 }");
/// ```
#[derive(Clone)]
pub struct SecretSet {
    keyed: Vec<KeyedSecret>,
}

impl SecretSet {
    /// A set holding one secret.
    pub fn new(secret: impl Into<Secret>) -> Self {
        let mut set = Self { keyed: Vec::new() };
        set.push(secret.into());
        set
    }

    /// Adds another accepted secret (builder style).
    #[must_use]
    pub fn with(mut self, secret: impl Into<Secret>) -> Self {
        self.push(secret.into());
        self
    }

    /// Adds another accepted secret.
    pub fn push(&mut self, secret: Secret) {
        // HMAC accepts keys of any length, so keying cannot fail.
        let mac = <HmacSha256 as Mac>::new_from_slice(secret.expose())
            .expect("HMAC-SHA256 accepts keys of any length");
        self.keyed.push(KeyedSecret { secret, mac });
    }

    /// Number of secrets in the set (at least one).
    pub fn len(&self) -> usize {
        self.keyed.len()
    }

    /// Always `false`: a set holds at least one secret.
    pub fn is_empty(&self) -> bool {
        self.keyed.is_empty()
    }

    /// The secrets, in the order they were added.
    pub fn iter(&self) -> impl Iterator<Item = &Secret> {
        self.keyed.iter().map(|k| &k.secret)
    }

    /// Whether any secret of the set has surrounding whitespace (see
    /// [`Secret::has_surrounding_whitespace`]); used to make error messages helpful.
    pub fn any_surrounding_whitespace(&self) -> bool {
        self.iter().any(Secret::has_surrounding_whitespace)
    }

    /// Computes HMAC-SHA256 of the concatenation of `parts` with the secret at `index`,
    /// streaming each part into the MAC (no concatenated copy is built).
    ///
    /// Returns `None` when `index` is out of range.
    pub(crate) fn tag(&self, index: usize, parts: &[&[u8]]) -> Option<[u8; TAG_LEN]> {
        self.keyed.get(index).map(|k| tag_with(&k.mac, parts))
    }

    /// Finds the first secret whose HMAC-SHA256 over the concatenated `parts` equals any
    /// of the `candidates`, comparing in constant time. Returns that secret's index.
    ///
    /// Every candidate is compared against every computed tag, so the time taken does
    /// not depend on which candidate or how many bytes of it match.
    pub(crate) fn matching(&self, parts: &[&[u8]], candidates: &[[u8; TAG_LEN]]) -> Option<usize> {
        if candidates.is_empty() {
            return None;
        }
        for (index, keyed) in self.keyed.iter().enumerate() {
            let tag = tag_with(&keyed.mac, parts);
            let mut found = Choice::from(0);
            for candidate in candidates {
                found |= tags_equal(&tag, candidate);
            }
            if bool::from(found) {
                return Some(index);
            }
        }
        None
    }
}

/// Whether two tags are equal, in constant time: compared as four 64-bit
/// words through `subtle`, not byte by byte (a quarter of the steps, and the
/// time still depends on neither tag).
pub(crate) fn tags_equal(a: &[u8; TAG_LEN], b: &[u8; TAG_LEN]) -> Choice {
    words(a).ct_eq(&words(b))
}

/// A tag as the four little-endian words it is made of.
fn words(tag: &[u8; TAG_LEN]) -> [u64; TAG_LEN / 8] {
    let mut words = [0u64; TAG_LEN / 8];
    for (word, bytes) in words.iter_mut().zip(tag.chunks_exact(8)) {
        let mut eight = [0u8; 8];
        eight.copy_from_slice(bytes);
        *word = u64::from_le_bytes(eight);
    }
    words
}

fn tag_with(keyed: &HmacSha256, parts: &[&[u8]]) -> [u8; TAG_LEN] {
    let mut mac = keyed.clone();
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

impl fmt::Debug for SecretSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretSet")
            .field("secrets", &self.keyed.len())
            .finish()
    }
}

impl<S: Into<Secret>> From<S> for SecretSet {
    fn from(secret: S) -> Self {
        Self::new(secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_streams_parts_like_one_buffer() {
        let set = SecretSet::new("key");
        let joined = set.tag(0, &[b"12.hello"]).unwrap();
        let parts = set.tag(0, &[b"12", b".", b"hello"]).unwrap();
        assert_eq!(joined, parts);
        assert!(set.tag(1, &[b"x"]).is_none());
    }

    #[test]
    fn matching_finds_any_secret_and_any_candidate() {
        let set = SecretSet::new("new").with("old");
        let old_tag = SecretSet::new("old").tag(0, &[b"body"]).unwrap();
        assert_eq!(set.matching(&[b"body"], &[[0u8; 32], old_tag]), Some(1));
        assert_eq!(set.matching(&[b"other"], &[old_tag]), None);
        assert_eq!(set.matching(&[b"body"], &[]), None);
    }

    proptest::proptest! {
        /// Equal exactly when the bytes are, whichever byte differs.
        #[test]
        fn tags_are_equal_exactly_when_their_bytes_are(
            a in proptest::array::uniform32(proptest::prelude::any::<u8>()),
            at in 0usize..32,
            flip in 1u8..=255,
        ) {
            proptest::prop_assert!(bool::from(tags_equal(&a, &a)));
            let mut b = a;
            b[at] ^= flip;
            proptest::prop_assert!(!bool::from(tags_equal(&a, &b)));
            proptest::prop_assert!(!bool::from(tags_equal(&b, &a)));
        }
    }

    #[test]
    fn whitespace_is_detected() {
        assert!(Secret::from("abc\n").has_surrounding_whitespace());
        assert!(Secret::from(" abc").has_surrounding_whitespace());
        assert!(!Secret::from("a b").has_surrounding_whitespace());
        assert!(!Secret::from("").has_surrounding_whitespace());
    }
}
