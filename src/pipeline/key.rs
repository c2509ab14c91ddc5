//! The key an attempt claims, `provider:event_id`, held inline when it is
//! short (as nearly every provider's is), so that claiming a delivery does
//! not allocate for it.

use std::fmt;

/// Keys up to this many bytes are held inline: a 36-character UUID after a
/// provider name of up to 27 bytes fits.
const INLINE: usize = 64;

/// A claim key: [`crate::event::idempotency_key`] of the event, or of a
/// forced replay (`…#replay:<record>`).
pub(super) struct ClaimKey(Repr);

enum Repr {
    Inline { bytes: [u8; INLINE], len: usize },
    Heap(String),
}

impl ClaimKey {
    /// The key of `parts` joined, in order.
    pub(super) fn joined(parts: &[&str]) -> Self {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > INLINE {
            return Self(Repr::Heap(parts.concat()));
        }
        let mut bytes = [0; INLINE];
        let mut at = 0;
        for part in parts {
            bytes[at..at + part.len()].copy_from_slice(part.as_bytes());
            at += part.len();
        }
        Self(Repr::Inline { bytes, len })
    }

    /// The key `provider:id`.
    pub(super) fn event(provider: &str, id: &str) -> Self {
        Self::joined(&[provider, ":", id])
    }

    pub(super) fn as_str(&self) -> &str {
        match &self.0 {
            // Whole `&str`s joined: valid UTF-8, checked again (a few
            // nanoseconds) rather than assumed.
            Repr::Inline { bytes, len } => std::str::from_utf8(&bytes[..*len]).unwrap_or_default(),
            Repr::Heap(key) => key,
        }
    }
}

impl std::ops::Deref for ClaimKey {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for ClaimKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// Inline or not, the key is the event's idempotency key, byte for byte.
        #[test]
        fn a_key_is_the_idempotency_key(provider in "\\PC{0,40}", id in "\\PC{0,80}", record in any::<u64>()) {
            let key = ClaimKey::event(&provider, &id);
            prop_assert_eq!(key.as_str(), crate::event::idempotency_key(&provider, &id));
            let replay = format!("#replay:{record}");
            let forced = ClaimKey::joined(&[&provider, ":", &id, &replay]);
            prop_assert_eq!(forced.as_str(), format!("{}#replay:{record}", crate::event::idempotency_key(&provider, &id)));
        }
    }

    #[test]
    fn keys_at_the_inline_limit_and_past_it_are_whole() {
        let id = "x".repeat(INLINE - 7);
        assert_eq!(ClaimKey::event("github", &id).len(), INLINE);
        let longer = ClaimKey::event("github", &format!("{id}y"));
        assert_eq!(longer.len(), INLINE + 1);
        assert!(longer.ends_with("xy"));
        assert!(matches!(
            ClaimKey::event("github", &id).0,
            Repr::Inline { .. }
        ));
        assert!(matches!(longer.0, Repr::Heap(_)));
    }
}
