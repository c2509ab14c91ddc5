//! The replay guard: deduplicate on the signed body where a provider's id and
//! kind headers are unsigned.
//!
//! GitHub and Shopify sign the body only. Their delivery id and kind headers
//! (`X-GitHub-Delivery` / `X-GitHub-Event`, `X-Shopify-Webhook-Id` /
//! `X-Shopify-Topic` / `X-Shopify-Shop-Domain`) can be rewritten by anyone who
//! holds a captured delivery: under a fresh id it runs again, under another
//! kind it runs another handler. With the guard on for a provider, the claim is
//! turned around:
//!
//! - the idempotency **key** is the body's digest (the 128-bit xxh3
//!   [`Fingerprint`] the pipeline computes anyway), which nobody can rewrite
//!   without breaking the signature;
//! - the claim's **fingerprint** is a digest of what the headers say (id, kind
//!   and the profile's [`identity_metadata`](ProviderProfile::identity_metadata)).
//!
//! So the provider's own redelivery (same body, same headers) is an ordinary
//! duplicate, the same body under other headers is a fingerprint mismatch that
//! the pipeline answers as a reported replay, and a new body is claimed as
//! usual. The [`Event`](crate::Event) the handlers see is unchanged: its id is
//! still the provider's delivery id.

use std::fmt::Write as _;

use super::builder::{BuildError, ANY_PROVIDER};
use crate::event::idempotency_key;
use crate::store::Fingerprint;
use crate::verify::{Identity, ProviderProfile};

/// The key and fingerprint a delivery is claimed with: `provider:event_id`
/// with the body's fingerprint, or under the replay guard the body's key with
/// the headers' fingerprint.
pub(super) fn claim_of(
    provider: &str,
    profile: &ProviderProfile,
    guarded: bool,
    identity: &Identity,
    body: &[u8],
) -> (String, Fingerprint) {
    let body = Fingerprint::of(body);
    if !guarded {
        return (idempotency_key(provider, &identity.id), body);
    }
    (
        body_key(provider, body),
        identity_fingerprint(profile, identity),
    )
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
    fn unguarded_keys_stay_provider_colon_id_with_the_body_fingerprint() {
        let profile = ProviderProfile::default();
        let (key, fp) = claim_of("github", &profile, false, &identity("d-1", "issues"), b"{}");
        assert_eq!(key, "github:d-1");
        assert_eq!(fp, Fingerprint::of(b"{}"));
    }

    #[test]
    fn guarded_keys_depend_on_the_body_only() {
        let profile = ProviderProfile::default();
        let body = b"{\"action\":\"opened\"}";
        let (a, fa) = claim_of("github", &profile, true, &identity("d-1", "issues"), body);
        let (b, fb) = claim_of("github", &profile, true, &identity("d-2", "issues"), body);
        let (c, fc) = claim_of("github", &profile, true, &identity("d-1", "push"), body);
        assert_eq!(a, format!("github#{:032x}", Fingerprint::of(body).0));
        assert_eq!((a == b, b == c), (true, true));
        assert!(fa != fb && fa != fc && fb != fc);
        let (d, _) = claim_of("github", &profile, true, &identity("d-1", "issues"), b"{}");
        assert_ne!(a, d);
    }

    #[test]
    fn a_body_key_never_equals_an_event_id_key() {
        let profile = ProviderProfile::default();
        let (guarded, _) = claim_of("github", &profile, true, &identity("x", "k"), b"{}");
        let id = guarded.trim_start_matches("github#");
        let (plain, _) = claim_of("github", &profile, false, &identity(id, "k"), b"{}");
        assert_ne!(guarded, plain);
        assert!(!guarded.contains(':'));
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
