//! Metadata names read back from the wire.
//!
//! [`Identity`](crate::Identity) keeps metadata names as `&'static str`
//! (verifiers name them in code). A decoded job's names come from bytes, so
//! they are interned: each distinct name is allocated once for the life of
//! the process. The interner is bounded, so hostile messages cannot grow it
//! without limit.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock, PoisonError};

/// Distinct metadata names the process interns at most.
pub(crate) const MAX_NAMES: usize = 1024;

/// Longest metadata name, in bytes.
pub(crate) const MAX_NAME_LEN: usize = 128;

/// Why a name was not interned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InternError {
    /// Longer than [`MAX_NAME_LEN`].
    TooLong,
    /// [`MAX_NAMES`] other names are already interned.
    Full,
}

fn names() -> &'static Mutex<HashSet<&'static str>> {
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    NAMES.get_or_init(|| Mutex::new(HashSet::new()))
}

/// The process-wide `&'static str` equal to `name`.
pub(crate) fn intern(name: &str) -> Result<&'static str, InternError> {
    if name.len() > MAX_NAME_LEN {
        return Err(InternError::TooLong);
    }
    // Nothing panics while the lock is held; recover the set anyway.
    let mut names = names().lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(&known) = names.get(name) {
        return Ok(known);
    }
    if names.len() >= MAX_NAMES {
        return Err(InternError::Full);
    }
    // Bounded by MAX_NAMES × MAX_NAME_LEN bytes for the whole process.
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.insert(leaked);
    Ok(leaked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_name_is_interned_once() {
        let a = intern("shop_domain").unwrap();
        let b = intern(&String::from("shop_domain")).unwrap();
        assert!(std::ptr::eq(a, b));
    }

    #[test]
    fn a_name_over_the_limit_is_refused() {
        assert_eq!(
            intern(&"x".repeat(MAX_NAME_LEN + 1)),
            Err(InternError::TooLong)
        );
        assert!(intern(&"y".repeat(MAX_NAME_LEN)).is_ok());
    }
}
