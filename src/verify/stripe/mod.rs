//! Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]` over `{t}.{body}`.
//!
//! The header is read exactly as stripe-node's `Webhooks` reads it
//! (`src/Webhooks.ts`, `parseHeader` and `validateComputedSignature`): entries are
//! split on `,`, each entry on `=`, keys compared exactly (`t`, `v1`, no trimming,
//! case-sensitive), the last `t` wins and is read like JavaScript's
//! `parseInt(value, 10)`, every `v1` is a candidate, other schemes are ignored. The
//! signed payload starts with the timestamp as JavaScript prints that number.

use std::time::Duration;

use subtle::Choice;
use time::OffsetDateTime;

mod header;
mod timestamp;

use header::{entries, ParsedHeader};

use super::encoding::decode_lower_hex;
use super::envelope::{Envelope, Scalar};
use super::{check_secrets, mismatch, signature_header};
use super::{
    ConfigError, IdentifyError, Identity, ProviderProfile, Verified, Verifier, VerifyError,
};
use crate::headers::Headers;
use crate::secret::{tags_equal, Secret, SecretSet};

/// The header Stripe signs deliveries with.
const HEADER: &str = "Stripe-Signature";

/// Verifies Stripe webhook deliveries.
///
/// Default behaviour is stripe-node's `Webhooks.constructEvent` with its default
/// tolerance: a delivery passes when any `v1` signature matches any configured
/// secret and the signed timestamp is at most 300 s old; timestamps in the future
/// pass (opt into a limit with [`StripeBuilder::max_future_skew`]). See the README's
/// "Verification rules" for every rule.
///
/// [`identify`](Verifier::identify) reads the top-level `id`, `type` and `created`
/// (a repeated key keeps its last value, as `serde_json::Value` does) and refuses
/// any body serde_json would refuse with [`IdentifyError::InvalidJson`], so a
/// handler's `Event::json` never meets one.
///
/// ```
/// use hookgate::{testing, Headers, Stripe, Verifier};
/// use time::OffsetDateTime;
///
/// let stripe = Stripe::builder("whsec_test").build()?;
/// let body = br#"{"id":"evt_1","type":"invoice.paid","created":1700000000}"#;
/// let now = OffsetDateTime::from_unix_timestamp(1_700_000_000)?;
/// let headers = Headers::from_pairs(testing::stripe_headers("whsec_test", body, now));
/// let verified = stripe.verify(body, &headers, now)?;
/// assert_eq!(verified.signed_at, Some(now));
/// assert_eq!(stripe.identify(body, &headers)?.kind, "invoice.paid");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Stripe {
    secrets: SecretSet,
    tolerance: Option<Duration>,
    max_future_skew: Option<Duration>,
    plain_timestamp: bool,
}

/// Settings of a [`Stripe`] verifier.
#[derive(Debug, Clone)]
#[must_use = "call `.build()` to get the verifier"]
pub struct StripeBuilder {
    secrets: SecretSet,
    tolerance: Option<Duration>,
    max_future_skew: Option<Duration>,
    plain_timestamp: bool,
}

impl Stripe {
    /// The header Stripe signs with (matched case-insensitively).
    pub const SIGNATURE_HEADER: &'static str = HEADER;

    /// Stripe's default tolerance: a signature may be 300 s old (stripe-node's
    /// `DEFAULT_TOLERANCE`).
    pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

    /// Starts a builder accepting the given secret (or set of secrets), e.g. the
    /// endpoint's `whsec_…` string, used as is.
    pub fn builder(secrets: impl Into<SecretSet>) -> StripeBuilder {
        StripeBuilder {
            secrets: secrets.into(),
            tolerance: Some(Self::DEFAULT_TOLERANCE),
            max_future_skew: None,
            plain_timestamp: false,
        }
    }

    /// The secrets this verifier accepts.
    pub fn secrets(&self) -> &SecretSet {
        &self.secrets
    }
}

impl StripeBuilder {
    /// Also accepts this secret (keep the old one while Stripe rolls a secret).
    pub fn secret(mut self, secret: impl Into<Secret>) -> Self {
        self.secrets.push(secret.into());
        self
    }

    /// How old a signed timestamp may be. Default: 300 s. A timestamp exactly
    /// `tolerance` old passes, one second older fails (stripe-node checks
    /// `age > tolerance`). Sub-second parts are ignored, since timestamps are whole
    /// seconds. `Duration::ZERO` accepts only timestamps that are not in the past
    /// (use [`insecure_skip_timestamp_check`](Self::insecure_skip_timestamp_check) to
    /// disable the check, which stripe-node's `signature.verifyHeader` does with a
    /// tolerance of `0`).
    pub fn tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = Some(tolerance);
        self
    }

    /// Disables the age check, so a captured delivery can be replayed forever. Only
    /// for offline processing of stored events.
    pub fn insecure_skip_timestamp_check(mut self) -> Self {
        self.tolerance = None;
        self
    }

    /// Stricter than Stripe's SDK: also rejects timestamps more than `skew` in the
    /// future (stripe-node accepts any future timestamp). A timestamp exactly `skew`
    /// ahead passes. Default: no limit.
    pub fn max_future_skew(mut self, skew: Duration) -> Self {
        self.max_future_skew = Some(skew);
        self
    }

    /// Stricter than Stripe's SDK: refuses a `t=` value that is not plain decimal
    /// digits, as Stripe always sends. stripe-node reads it with `parseInt`, so
    /// `t= 17abc` counts as 17 and `t=abc` as NaN, a timestamp that never ages out
    /// of the tolerance window. Default: off (the SDK's reading).
    pub fn require_plain_timestamp(mut self) -> Self {
        self.plain_timestamp = true;
        self
    }

    /// Builds the verifier.
    ///
    /// # Errors
    /// [`ConfigError::EmptySecret`] when a secret of the set is empty.
    pub fn build(self) -> Result<Stripe, ConfigError> {
        check_secrets(&self.secrets)?;
        Ok(Stripe {
            secrets: self.secrets,
            tolerance: self.tolerance,
            max_future_skew: self.max_future_skew,
            plain_timestamp: self.plain_timestamp,
        })
    }
}

impl Verifier for Stripe {
    fn provider(&self) -> &str {
        "stripe"
    }

    /// Stripe's defaults are [`ProviderProfile::default`]'s (1 MiB, 72 h for
    /// its 3 days of retries), and it signs the event's id and type: both are
    /// in the signed body.
    fn profile(&self) -> ProviderProfile {
        ProviderProfile {
            signs_identity: true,
            ..ProviderProfile::default()
        }
    }

    fn detect(&self, headers: &Headers) -> bool {
        headers.contains(HEADER)
    }

    fn verify(
        &self,
        body: &[u8],
        headers: &Headers,
        now: OffsetDateTime,
    ) -> Result<Verified, VerifyError> {
        let header =
            signature_header(headers, HEADER)?.ok_or(VerifyError::MissingHeader(HEADER))?;
        let parsed = ParsedHeader::parse(header, self.plain_timestamp)?;
        let secret_index = self
            .matching_secret(&parsed, header, body)
            .ok_or_else(|| mismatch(&self.secrets))?;
        self.check_window(parsed.timestamp.value, now)?;
        Ok(Verified::new(parsed.timestamp.as_datetime(), secret_index))
    }

    fn identify(&self, body: &[u8], _headers: &Headers) -> Result<Identity, IdentifyError> {
        // A body serde_json would refuse (as `Event::json` would) is refused here,
        // before anything is claimed or routed.
        let envelope =
            Envelope::parse(body).map_err(|e| IdentifyError::InvalidJson(e.to_string()))?;
        if envelope.object.as_ref().and_then(Scalar::as_str) == Some("v2.core.event") {
            return Err(IdentifyError::Unsupported(
                "a Stripe thin event notification (`v2.core.event`), which stripe-node's constructEvent refuses as well",
            ));
        }
        let id = non_empty(envelope.id.as_ref()).ok_or(IdentifyError::MissingField("id"))?;
        let kind = non_empty(envelope.kind.as_ref()).ok_or(IdentifyError::MissingField("type"))?;
        let occurred_at = match envelope.created {
            Some(Scalar::Int(created)) => OffsetDateTime::from_unix_timestamp(created).ok(),
            _ => None,
        };
        Ok(Identity::new(id, kind).occurred_at(occurred_at))
    }
}

fn non_empty<'s>(field: Option<&'s Scalar<'_>>) -> Option<&'s str> {
    field.and_then(Scalar::as_str).filter(|s| !s.is_empty())
}

impl Stripe {
    /// Index of the first secret whose MAC over `{t}.{body}` equals any `v1` value.
    /// The MAC is computed once per secret and compared with every candidate in
    /// constant time; malformed candidates simply never match.
    fn matching_secret(
        &self,
        parsed: &ParsedHeader<'_>,
        header: &[u8],
        body: &[u8],
    ) -> Option<usize> {
        let parts: [&[u8]; 3] = [parsed.timestamp.text(), b".", body];
        if !parsed.overflow {
            return self
                .secrets
                .matching(&parts, &parsed.candidates[..parsed.decoded]);
        }
        // More well-formed `v1` values than the inline array holds (Stripe sends at
        // most two): compare each secret's tag with every value of the header.
        (0..self.secrets.len()).find(|&index| {
            let Some(tag) = self.secrets.tag(index, &parts) else {
                return false;
            };
            let mut found = Choice::from(0);
            for (key, value) in entries(header) {
                if key == b"v1" {
                    if let Some(candidate) = value.and_then(decode_lower_hex) {
                        found |= tags_equal(&tag, &candidate);
                    }
                }
            }
            bool::from(found)
        })
    }

    /// The age check (stripe-node's) and the opt-in future limit, both in
    /// JavaScript number arithmetic so a non-numeric `t` behaves as in the SDK.
    fn check_window(&self, timestamp: f64, now: OffsetDateTime) -> Result<(), VerifyError> {
        // i64 seconds to f64 is exact for every date OffsetDateTime can hold.
        let age = now.unix_timestamp() as f64 - timestamp;
        if let Some(tolerance) = self.tolerance {
            if age > tolerance.as_secs() as f64 {
                return Err(VerifyError::TimestampOutsideTolerance {
                    skew_seconds: age as i64,
                    tolerance_seconds: tolerance.as_secs(),
                });
            }
        }
        if let Some(skew) = self.max_future_skew {
            if -age > skew.as_secs() as f64 {
                return Err(VerifyError::TimestampOutsideTolerance {
                    skew_seconds: age as i64,
                    tolerance_seconds: skew.as_secs(),
                });
            }
        }
        Ok(())
    }
}
