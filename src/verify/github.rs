//! GitHub: `X-Hub-Signature-256: sha256=<hex>` over the body.
//!
//! The header is compared as `@octokit/webhooks-methods` (v6, `src/node/verify.ts`)
//! compares it: the whole value must equal `sha256=` followed by the lowercase hex
//! HMAC-SHA256 of the payload, byte for byte. The legacy SHA-1 `X-Hub-Signature`
//! is never enough.

use time::OffsetDateTime;

use super::encoding::decode_lower_hex;
use super::envelope::{first_action, Scalar};
use super::{check_secrets, optional_header, required_header, signature_header, verify_body_tag};
use super::{
    ConfigError, IdentifyError, Identity, ProviderProfile, Verified, Verifier, VerifyError,
};
use crate::headers::Headers;
use crate::secret::{Secret, SecretSet};

const HEADER: &str = "X-Hub-Signature-256";
const SHA1_HEADER: &str = "X-Hub-Signature";
const PREFIX: &[u8] = b"sha256=";
const DELIVERY: &str = "X-GitHub-Delivery";
const EVENT: &str = "X-GitHub-Event";

/// How a form-encoded delivery (content type `application/x-www-form-urlencoded`)
/// starts: GitHub sends `payload=<the JSON, URL-encoded>`.
const FORM_PREFIX: &[u8] = b"payload=";

/// Whether `body` is GitHub's form encoding rather than JSON. Decided on the
/// signed bytes, not the unsigned `Content-Type`: no JSON document starts with
/// `p`, so the two never overlap.
fn is_form_encoded(body: &[u8]) -> bool {
    body.starts_with(FORM_PREFIX)
}

/// Metadata names [`GitHub::identify`] records, with the header each comes from.
const METADATA: [(&str, &str); 3] = [
    ("hook_id", "X-GitHub-Hook-ID"),
    (
        "installation_target_type",
        "X-GitHub-Hook-Installation-Target-Type",
    ),
    (
        "installation_target_id",
        "X-GitHub-Hook-Installation-Target-ID",
    ),
];

/// Verifies GitHub webhook deliveries.
///
/// Default behaviour is `@octokit/webhooks-methods`'s `verify`: the body must be
/// non-empty and `X-Hub-Signature-256` must be exactly `sha256=` plus the 64
/// lowercase hex digits of the HMAC-SHA256 of the body under one of the secrets.
/// GitHub signs no timestamp, so there is no replay window: deduplicate on the
/// delivery id.
///
/// [`identify`](Verifier::identify) names the event `X-GitHub-Event`, refined
/// with the body's first top-level string `action` (`issues.opened`). A JSON body
/// serde_json would refuse (so `Event::json` would fail) is
/// [`IdentifyError::InvalidJson`]; a form-encoded body (`payload=…`) is not JSON
/// and keeps the bare event name.
///
/// ```
/// use hookgate::{testing, GitHub, Headers, Verifier};
/// use time::OffsetDateTime;
///
/// let github = GitHub::builder("gh-secret").build()?;
/// let body = br#"{"action":"opened","issue":{"number":1}}"#;
/// let headers = Headers::from_pairs(testing::github_headers("gh-secret", body, "issues", "72d3162e"));
/// github.verify(body, &headers, OffsetDateTime::now_utc())?;
/// let identity = github.identify(body, &headers)?;
/// assert_eq!((identity.id.as_str(), identity.kind.as_str()), ("72d3162e", "issues.opened"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct GitHub {
    secrets: SecretSet,
}

secrets_only_builder!(GitHub, GitHubBuilder, "the webhook's secret");

impl GitHub {
    /// The header GitHub signs with (matched case-insensitively).
    pub const SIGNATURE_HEADER: &'static str = HEADER;
}

impl Verifier for GitHub {
    fn provider(&self) -> &str {
        "github"
    }

    /// GitHub sends payloads of up to 25 MB, waits 10 s for an answer, never
    /// retries on its own (failed deliveries wait for a manual or API
    /// redelivery), and names events `event.action`. Completed events are
    /// remembered 30 days, beyond GitHub's redelivery window. The delivery id
    /// (`X-GitHub-Delivery`) and event (`X-GitHub-Event`) headers are not
    /// signed.
    fn profile(&self) -> ProviderProfile {
        ProviderProfile {
            body_limit: 25 * 1024 * 1024,
            answer_within: std::time::Duration::from_secs(10),
            retention: std::time::Duration::from_secs(30 * 24 * 60 * 60),
            retries: false,
            kinds_carry_action: true,
            signs_identity: false,
            identity_metadata: &[],
            journal_headers: &[
                "content-type",
                "user-agent",
                "x-github-delivery",
                "x-github-event",
                "x-github-hook-id",
                "x-github-hook-installation-target-type",
                "x-github-hook-installation-target-id",
            ],
            delivery_id_headers: &["x-github-delivery"],
        }
    }

    fn detect(&self, headers: &Headers) -> bool {
        headers.contains(HEADER) || headers.contains(SHA1_HEADER)
    }

    fn verify(
        &self,
        body: &[u8],
        headers: &Headers,
        _now: OffsetDateTime,
    ) -> Result<Verified, VerifyError> {
        let Some(value) = signature_header(headers, HEADER)? else {
            return Err(if headers.contains(SHA1_HEADER) {
                VerifyError::NoSupportedSignature {
                    header: SHA1_HEADER,
                    scheme: "sha256",
                }
            } else {
                VerifyError::MissingHeader(HEADER)
            });
        };
        if value.is_empty() {
            return Err(VerifyError::MalformedHeader {
                header: HEADER,
                reason: "the value is empty",
            });
        }
        if body.is_empty() {
            return Err(VerifyError::EmptyBody);
        }
        let hex = value
            .strip_prefix(PREFIX)
            .ok_or(VerifyError::NoSupportedSignature {
                header: HEADER,
                scheme: "sha256",
            })?;
        let candidate = decode_lower_hex(hex).ok_or(VerifyError::MalformedHeader {
            header: HEADER,
            reason: "expected `sha256=` followed by exactly 64 lowercase hex digits",
        })?;
        verify_body_tag(&self.secrets, body, candidate)
    }

    fn identify(&self, body: &[u8], headers: &Headers) -> Result<Identity, IdentifyError> {
        let id = required_header(headers, DELIVERY)?;
        let event = required_header(headers, EVENT)?;
        // The action refines the kind when the body is a JSON object with a string
        // `action`; form-encoded or non-object payloads keep the bare event name.
        // A JSON body serde_json would refuse (as `Event::json` would) is refused
        // here, before anything is claimed or routed.
        let action = if is_form_encoded(body) {
            None
        } else {
            match first_action(body).map_err(|e| IdentifyError::InvalidJson(e.to_string()))? {
                Some(Scalar::Str(action)) if !action.is_empty() => Some(action),
                _ => None,
            }
        };
        // Built in one allocation (`format!` would grow its buffer once).
        let kind = match action {
            Some(action) => {
                let mut kind = String::with_capacity(event.len() + 1 + action.len());
                kind.push_str(event);
                kind.push('.');
                kind.push_str(&action);
                kind
            }
            None => event.to_owned(),
        };
        let mut identity = Identity::new(id, kind);
        for (name, header) in METADATA {
            if let Some(value) = optional_header(headers, header) {
                identity = identity.with_metadata(name, value);
            }
        }
        Ok(identity)
    }
}
