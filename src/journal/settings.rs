//! [`JournalSettings`]: what the pipeline keeps of each delivery, and how it
//! writes records.

use super::record::BodyRetention;

/// How the pipeline journals deliveries; set with
/// [`PipelineBuilder::journal_settings`](crate::PipelineBuilder::journal_settings).
///
/// ```
/// use hookgate::journal::{BodyRetention, JournalSettings};
/// let settings = JournalSettings {
///     body_retention: BodyRetention::DigestOnly, // bodies hold personal data
///     headers: vec!["x-request-id".into()],
///     ..JournalSettings::default()
/// };
/// # let _ = settings;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalSettings {
    /// What is kept of a verified delivery's body. Defaults to
    /// [`BodyRetention::Keep`], so failed deliveries can be replayed.
    pub body_retention: BodyRetention,
    /// Bodies larger than this many bytes keep their digest only (and cannot
    /// be replayed from the journal). Defaults to 4 MiB.
    pub max_body_bytes: usize,
    /// Headers kept for verified deliveries besides those of the provider's
    /// [profile](crate::verify::ProviderProfile::journal_headers) (case does
    /// not matter). Headers whose name holds `signature`, `hmac`,
    /// `authorization`, `cookie`, `token`, `secret` or `key` are never kept,
    /// even when listed here. Defaults to none.
    pub headers: Vec<String>,
    /// How many records may wait for the background writer; when it is full,
    /// new records are dropped (and counted). Defaults to 10,000.
    pub queue_capacity: usize,
    /// The most records the background writer hands the journal in one
    /// [`write`](crate::journal::Journal::write). Defaults to 256.
    pub batch_size: usize,
}

impl Default for JournalSettings {
    fn default() -> Self {
        Self {
            body_retention: BodyRetention::Keep,
            max_body_bytes: 4 * 1024 * 1024,
            headers: Vec::new(),
            queue_capacity: 10_000,
            batch_size: 256,
        }
    }
}

#[cfg(feature = "tokio")]
/// Parts of header names that are never journaled: they name signatures,
/// credentials or secrets.
const NEVER_KEPT: &[&str] = &[
    "signature",
    "hmac",
    "authorization",
    "cookie",
    "token",
    "secret",
    "key",
];

/// The first letters of the parts of [`NEVER_KEPT`], in either case.
#[cfg(feature = "tokio")]
const STARTS_A_PART: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < NEVER_KEPT.len() {
        let first = NEVER_KEPT[i].as_bytes()[0];
        table[first.to_ascii_lowercase() as usize] = true;
        table[first.to_ascii_uppercase() as usize] = true;
        i += 1;
    }
    table
};

#[cfg(feature = "tokio")]
impl JournalSettings {
    /// Whether a header of this name may be journaled at all.
    pub(crate) fn may_keep(name: &str) -> bool {
        let name = name.as_bytes();
        // One pass, compared in place, case-insensitively (no lowercase copy
        // per header): only where a part's first letter is are the parts
        // compared.
        !name.iter().enumerate().any(|(at, &byte)| {
            STARTS_A_PART[usize::from(byte)] && {
                let rest = &name[at..];
                NEVER_KEPT.iter().any(|part| {
                    rest.len() >= part.len()
                        && rest[..part.len()].eq_ignore_ascii_case(part.as_bytes())
                })
            }
        })
    }
}

#[cfg(all(test, feature = "tokio"))]
mod tests {
    use super::*;

    #[test]
    fn credentials_and_signatures_are_never_kept() {
        for name in [
            "Stripe-Signature",
            "X-Hub-Signature-256",
            "X-Shopify-Hmac-Sha256",
            "Authorization",
            "Cookie",
            "X-Api-Key",
            "X-Auth-Token",
            "x-webhook-secret",
            "X-SIGNATURE",
            "key",
            "Monkey",
        ] {
            assert!(!JournalSettings::may_keep(name), "{name}");
        }
        for name in [
            "X-GitHub-Delivery",
            "X-Shopify-Topic",
            "Content-Type",
            "User-Agent",
            "",
            "ke",
            "X-Signatur",
        ] {
            assert!(JournalSettings::may_keep(name), "{name}");
        }
    }

    #[test]
    fn may_keep_agrees_with_a_lowercase_search() {
        let pieces = [
            "",
            "x-",
            "S",
            "sig",
            "Signature",
            "HMAC",
            "to",
            "ken",
            "e",
            "y",
        ];
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    let name = format!("{a}{b}{c}");
                    let lower = name.to_ascii_lowercase();
                    let expected = !NEVER_KEPT.iter().any(|part| lower.contains(part));
                    assert_eq!(JournalSettings::may_keep(&name), expected, "{name}");
                }
            }
        }
    }
}
