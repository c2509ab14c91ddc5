//! The replay guard: deduplicate on the signed body where a provider's id and
//! kind headers are unsigned.
//!
//! GitHub and Shopify sign the body only. Their delivery id and kind headers
//! (`X-GitHub-Delivery` / `X-GitHub-Event`, `X-Shopify-Webhook-Id` /
//! `X-Shopify-Topic` / `X-Shopify-Shop-Domain`) can be rewritten by anyone who
//! holds a captured delivery: under a fresh id it runs again, under another
//! kind it runs another handler. With the guard on for a provider, each body is
//! **registered** to the first identity it comes with, before the event is
//! claimed:
//!
//! - the registration's **key** is the body's digest (the 128-bit xxh3
//!   [`Fingerprint`] the pipeline computes anyway), which nobody can rewrite
//!   without breaking the signature;
//! - its **fingerprint** is a digest of what the headers say (id, kind and the
//!   profile's [`identity_metadata`](ProviderProfile::identity_metadata));
//! - the registration is completed at once, kept for the provider's retention:
//!   the store's fingerprint guards completed keys, so the body stays bound to
//!   that identity whatever becomes of its attempts (a failed attempt releases
//!   the event's key, never the registration).
//!
//! So the provider's own redelivery (same body, same headers) passes and is an
//! ordinary duplicate or retry of its event (`provider:event_id`, claimed as
//! usual), the same body under other headers is a reported replay, and a new
//! body registers as usual. The [`Event`](crate::Event) the handlers see is
//! unchanged: its id is still the provider's delivery id.

use std::fmt::Write as _;
use std::time::SystemTime;

use super::build_error::BuildError;
use super::builder::ANY_PROVIDER;
use crate::store::{Claim, Fingerprint, IdempotencyStore, StoreError};
use crate::verify::{Identity, ProviderProfile};

use super::ProviderLimits;

/// What the registry says of a guarded delivery's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Registration {
    /// The body is registered to this delivery's identity (now, or by an
    /// earlier delivery with the same headers): claim the event as usual.
    Owner,
    /// The body is registered to another identity: a replay.
    Replayed,
    /// A delivery of this body is registering it right now, until `until`.
    Busy {
        /// When that registration's lease ends.
        until: SystemTime,
    },
}

/// Registers `body` to `identity` for `provider`, or tells who holds it.
///
/// # Errors
/// The store's, when it cannot be reached or refused the registration's token.
pub(super) async fn register(
    store: &dyn IdempotencyStore,
    provider: &str,
    profile: &ProviderProfile,
    limits: &ProviderLimits,
    identity: &Identity,
    body: &[u8],
) -> Result<Registration, StoreError> {
    let key = body_key(provider, Fingerprint::of(body));
    let fingerprint = identity_fingerprint(profile, identity);
    match store.claim(&key, fingerprint, limits.lease).await? {
        // First sighting; or a registration whose process stopped between
        // its claim and its completion, taken over.
        Claim::Acquired(token) | Claim::AcquiredBodyChanged(token) => {
            store.complete(&key, token, limits.retention).await?;
            Ok(Registration::Owner)
        }
        Claim::Completed => Ok(Registration::Owner),
        Claim::CompletedBodyChanged => Ok(Registration::Replayed),
        Claim::InFlight { until } => Ok(Registration::Busy { until }),
    }
}

/// `provider#` and the 32 lowercase hex digits of the body's fingerprint.
///
/// It holds no `:` (provider names cannot, see `check_provider_name`) while
/// every `provider:event_id` key does, so a body key never equals an event id
/// key, whatever id a sender puts in its headers; and with a fixed-length
/// suffix, two body keys are equal only for the same provider and digest.
fn body_key(provider: &str, body: Fingerprint) -> String {
    let mut key = String::with_capacity(provider.len() + 33);
    key.push_str(provider);
    key.push('#');
    // Writing into a String cannot fail.
    let _ = write!(key, "{:032x}", body.0);
    key
}

/// A digest of everything unsigned that names the delivery: id, kind and the
/// profile's identity metadata, each length-prefixed so that no two different
/// lists encode alike (`("ab", "c")` against `("a", "bc")`).
fn identity_fingerprint(profile: &ProviderProfile, identity: &Identity) -> Fingerprint {
    let mut bytes = Vec::with_capacity(64);
    let mut part = |value: Option<&str>| match value {
        Some(value) => {
            bytes.push(1);
            bytes.extend_from_slice(&(value.len() as u64).to_le_bytes());
            bytes.extend_from_slice(value.as_bytes());
        }
        None => bytes.push(0),
    };
    part(Some(&identity.id));
    part(Some(&identity.kind));
    for name in profile.identity_metadata {
        part(identity.metadata(name));
    }
    Fingerprint::of(&bytes)
}

/// Whether the guard covers the provider `name` with this profile, given the
/// provider names passed to `PipelineBuilder::replay_guard` (`*`: every
/// provider whose identity is unsigned).
///
/// # Errors
/// [`BuildError::ReplayGuardOnSignedIdentity`] when `name` itself was named
/// but its verifier signs the id and kind.
pub(super) fn covers(
    names: &[String],
    name: &str,
    profile: &ProviderProfile,
) -> Result<bool, BuildError> {
    if names.iter().any(|n| n == name) {
        if profile.signs_identity {
            return Err(BuildError::ReplayGuardOnSignedIdentity(name.to_owned()));
        }
        return Ok(true);
    }
    Ok(!profile.signs_identity && names.iter().any(|n| n == ANY_PROVIDER))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(id: &str, kind: &str) -> Identity {
        Identity::new(id, kind)
    }

    #[test]
    fn body_keys_depend_on_the_provider_and_the_body_only() {
        let body = Fingerprint::of(b"{\"action\":\"opened\"}");
        let key = body_key("github", body);
        assert_eq!(key, format!("github#{:032x}", body.0));
        assert_ne!(key, body_key("github", Fingerprint::of(b"{}")));
        assert_ne!(key, body_key("shopify", body));
    }

    #[test]
    fn a_body_key_never_equals_an_event_id_key() {
        let guarded = body_key("github", Fingerprint::of(b"{}"));
        let id = guarded.trim_start_matches("github#");
        assert_ne!(guarded, crate::event::idempotency_key("github", id));
        assert!(!guarded.contains(':'));
    }

    #[test]
    fn the_identity_fingerprint_covers_the_id_and_the_kind() {
        let profile = ProviderProfile::default();
        let of = |id, kind| identity_fingerprint(&profile, &identity(id, kind));
        assert_eq!(of("d-1", "issues"), of("d-1", "issues"));
        assert_ne!(of("d-1", "issues"), of("d-2", "issues"));
        assert_ne!(of("d-1", "issues"), of("d-1", "push"));
    }

    #[test]
    fn the_identity_fingerprint_is_unambiguous_and_covers_the_named_metadata() {
        let profile = ProviderProfile::default();
        let split = |id, kind| identity_fingerprint(&profile, &identity(id, kind));
        assert_ne!(split("ab", "c"), split("a", "bc"));

        let shopify = ProviderProfile {
            identity_metadata: &["shop_domain"],
            ..ProviderProfile::default()
        };
        let shop = |domain: Option<&str>| {
            let mut id = identity("w-1", "orders/create").with_metadata("api_version", "2025-07");
            if let Some(domain) = domain {
                id = id.with_metadata("shop_domain", domain);
            }
            identity_fingerprint(&shopify, &id)
        };
        assert_ne!(shop(Some("a.myshopify.com")), shop(Some("b.myshopify.com")));
        assert_ne!(shop(Some("")), shop(None));
        // Metadata the profile does not name is left out.
        let other = identity("w-1", "orders/create")
            .with_metadata("api_version", "2026-01")
            .with_metadata("shop_domain", "a.myshopify.com");
        assert_eq!(
            identity_fingerprint(&shopify, &other),
            shop(Some("a.myshopify.com"))
        );
    }

    #[test]
    fn the_guard_covers_named_and_wildcard_providers_with_unsigned_identity() {
        let unsigned = ProviderProfile::default();
        let signed = ProviderProfile {
            signs_identity: true,
            ..ProviderProfile::default()
        };
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();

        assert!(covers(&names(&["github"]), "github", &unsigned).unwrap());
        assert!(!covers(&names(&["github"]), "shopify", &unsigned).unwrap());
        assert!(covers(&names(&["*"]), "shopify", &unsigned).unwrap());
        assert!(!covers(&names(&["*"]), "stripe", &signed).unwrap());
        assert!(!covers(&[], "github", &unsigned).unwrap());
        assert!(matches!(
            covers(&names(&["*", "stripe"]), "stripe", &signed),
            Err(BuildError::ReplayGuardOnSignedIdentity(name)) if name == "stripe"
        ));
    }
}
