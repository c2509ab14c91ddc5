//! Slack: `X-Slack-Signature: v0=<hex>` over `v0:{X-Slack-Request-Timestamp}:{body}`.
//!
//! Rules follow the official SDKs: python-slack-sdk
//! (`slack_sdk/signature/__init__.py`, `SignatureVerifier.is_valid`), Bolt for
//! JavaScript (`src/receivers/verify-request.ts`, `verifySlackRequest`) and
//! slack-go (`security.go`, `NewSecretsVerifier`): the HMAC-SHA256 of
//! `v0:`, the timestamp header's text, `:` and the raw body, under the app's
//! signing secret, must equal the lowercase hex after `v0=`; the timestamp
//! must be within 300 s of the clock on either side, bounds included. The
//! README's "Slack" section lists every deliberate difference.
//!
//! [`payload`] names what a verified body is: an Events API envelope (JSON),
//! an interactivity payload or a slash command (both form-encoded), or one of
//! Slack's checks of the endpoint.

use std::time::Duration;

use time::OffsetDateTime;

mod payload;

use super::encoding::decode_lower_hex;
use super::{check_secrets, mismatch, signature_header};
use super::{
    ConfigError, Handshake, IdentifyError, Identity, ProviderProfile, Verified, Verifier,
    VerifyError,
};
use crate::headers::Headers;
use crate::secret::{Secret, SecretSet};

const SIGNATURE: &str = "X-Slack-Signature";
const TIMESTAMP: &str = "X-Slack-Request-Timestamp";

/// The version prefix of the signature header and of the signed bytes.
const V0: &[u8] = b"v0";

/// Verifies Slack requests: Events API deliveries, interactivity payloads and
/// slash commands, all signed with the app's signing secret.
///
/// Default behaviour is python-slack-sdk's `SignatureVerifier.is_valid`: the
/// signature header must be exactly `v0=` followed by the 64 lowercase hex
/// digits of the HMAC-SHA256, under one of the secrets, of
/// `v0:{timestamp}:{body}` (the timestamp as its header's text, the body's raw
/// bytes), and the timestamp must be at most 300 s away from the clock, in the
/// past or in the future. See the README's "Slack" section for every rule.
///
/// [`identify`](Verifier::identify) names the delivery from the signed body:
///
/// | body | dedup id | kind |
/// |---|---|---|
/// | Events API `event_callback` (JSON) | `event_id` | `event.type`, then `.` and `event.subtype` when there is one (`message.channel_join`) |
/// | other Events API JSON (`app_rate_limited`, …) | `event_id`, else the body digest | the top-level `type` |
/// | interactivity (`payload=<JSON>`, form-encoded) | `trigger_id`, else the body digest | the payload's `type`, then `.` and the id Bolt routes it by: the first action's `action_id` (`block_actions`), `action_id` (`block_suggestion`), `view.callback_id` (`view_submission`, `view_closed`), `callback_id` (shortcuts, legacy messages and dialogs) |
/// | slash command (form-encoded, `command=`) | `trigger_id`, else the body digest | `slash_command.` and the command (`slash_command./deploy`) |
///
/// The body digest is `sha256:` and the hex SHA-256 of the raw body, as
/// [`DedupKey::BodyDigest`](crate::dedup::DedupKey::BodyDigest) has it. Kinds
/// carry an action ([`ProviderProfile::kinds_carry_action`]): a route for
/// `message` also takes `message.bot_message`, one for `slash_command` every
/// command. Metadata: `team_id`, `api_app_id` (from the body), and
/// `retry_num`, `retry_reason` (from `X-Slack-Retry-Num` and
/// `X-Slack-Retry-Reason`, sent on Slack's retries).
///
/// [`handshake`](Verifier::handshake) answers a signed `url_verification`
/// with its `challenge` (plain text), and a signed `ssl_check=1` form with an
/// empty 200.
///
/// ```
/// use hookgate::{testing, Headers, Slack, Verifier};
/// use time::OffsetDateTime;
///
/// let secret = "8f742231b10e8888abcd99yyyzzz85a5";
/// let slack = Slack::builder(secret).build()?;
/// let body = br#"{"type":"event_callback","event_id":"Ev08MFMKH6","team_id":"T1","event":{"type":"app_mention","text":"hi"},"event_time":1700000000}"#;
/// let now = OffsetDateTime::from_unix_timestamp(1_700_000_000)?;
/// let headers = Headers::from_pairs(testing::slack_headers(secret, body, now));
/// let verified = slack.verify(body, &headers, now)?;
/// assert_eq!(verified.signed_at, Some(now));
/// let identity = slack.identify(body, &headers)?;
/// assert_eq!((identity.id.as_str(), identity.kind.as_str()), ("Ev08MFMKH6", "app_mention"));
/// assert_eq!(identity.metadata("team_id"), Some("T1"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Slack {
    secrets: SecretSet,
    tolerance: Option<Duration>,
}

/// Settings of a [`Slack`] verifier.
#[derive(Debug, Clone)]
#[must_use = "call `.build()` to get the verifier"]
pub struct SlackBuilder {
    secrets: SecretSet,
    tolerance: Option<Duration>,
}

impl Slack {
    /// The header Slack signs with (matched case-insensitively).
    pub const SIGNATURE_HEADER: &'static str = SIGNATURE;

    /// The header holding the signed timestamp (matched case-insensitively).
    pub const TIMESTAMP_HEADER: &'static str = TIMESTAMP;

    /// The default tolerance on either side of the clock: 300 s, as every
    /// official SDK has it.
    pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

    /// The first part of a slash command's kind (`slash_command./deploy`).
    pub const SLASH_COMMAND_KIND: &'static str = "slash_command";

    /// Starts a builder accepting the given signing secret (the app's
    /// "Signing Secret", used as is), or set of secrets.
    pub fn builder(secrets: impl Into<SecretSet>) -> SlackBuilder {
        SlackBuilder {
            secrets: secrets.into(),
            tolerance: Some(Self::DEFAULT_TOLERANCE),
        }
    }

    /// The signing secrets this verifier accepts.
    pub fn secrets(&self) -> &SecretSet {
        &self.secrets
    }

    /// The tolerance on either side of the clock; `None` when the timestamp
    /// check is disabled.
    pub fn tolerance(&self) -> Option<Duration> {
        self.tolerance
    }
}

impl SlackBuilder {
    /// Also accepts this signing secret (keep the old one while you rotate
    /// the app's secret).
    pub fn secret(mut self, secret: impl Into<Secret>) -> Self {
        self.secrets.push(secret.into());
        self
    }

    /// How far the signed timestamp may be from the clock, on either side.
    /// Default: 300 s. A timestamp exactly `tolerance` away passes, one second
    /// more fails (python-slack-sdk checks `abs(now - timestamp) > 60 * 5`).
    /// The clock is read in whole seconds (Bolt's `Math.floor(nowMs / 1000)`),
    /// and sub-second parts of `tolerance` are ignored. Use
    /// [`insecure_skip_timestamp_check`](Self::insecure_skip_timestamp_check)
    /// to disable the check.
    pub fn tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = Some(tolerance);
        self
    }

    /// Disables the timestamp check, so a captured request can be replayed
    /// forever. Only for offline processing of stored deliveries.
    pub fn insecure_skip_timestamp_check(mut self) -> Self {
        self.tolerance = None;
        self
    }

    /// Builds the verifier.
    ///
    /// # Errors
    /// [`ConfigError::EmptySecret`] when a secret of the set is empty.
    pub fn build(self) -> Result<Slack, ConfigError> {
        check_secrets(&self.secrets)?;
        Ok(Slack {
            secrets: self.secrets,
            tolerance: self.tolerance,
        })
    }
}

impl Verifier for Slack {
    fn provider(&self) -> &str {
        "slack"
    }

    /// Slack waits 3 s for an answer (then counts an `http_timeout` and
    /// retries at once), and retries a failed Events API delivery up to 3
    /// times: nearly immediately, after 1 minute and after 5 minutes.
    /// Completed events are remembered 1 hour, ten times that window and
    /// far beyond the 300 s in which a captured request still verifies.
    /// The dedup id and kind come from the signed body, so `signs_identity`
    /// is `true`. Slack sends no delivery id header.
    fn profile(&self) -> ProviderProfile {
        ProviderProfile {
            answer_within: Duration::from_secs(3),
            retention: Duration::from_secs(60 * 60),
            retries: true,
            kinds_carry_action: true,
            signs_identity: true,
            journal_headers: &[
                "content-type",
                "user-agent",
                "x-slack-request-timestamp",
                "x-slack-retry-num",
                "x-slack-retry-reason",
            ],
            delivery_id_headers: &[],
            ..ProviderProfile::default()
        }
    }

    fn detect(&self, headers: &Headers) -> bool {
        headers.contains(SIGNATURE)
    }

    fn verify(
        &self,
        body: &[u8],
        headers: &Headers,
        now: OffsetDateTime,
    ) -> Result<Verified, VerifyError> {
        let signature =
            signature_header(headers, SIGNATURE)?.ok_or(VerifyError::MissingHeader(SIGNATURE))?;
        let timestamp =
            signature_header(headers, TIMESTAMP)?.ok_or(VerifyError::MissingHeader(TIMESTAMP))?;
        let candidate = parse_signature(signature)?;
        let seconds = parse_timestamp(timestamp)?;
        // The SDKs check the window before the signature.
        self.check_window(seconds, now)?;
        let parts: [&[u8]; 5] = [V0, b":", timestamp, b":", body];
        let index = self
            .secrets
            .matching(&parts, &[candidate])
            .ok_or_else(|| mismatch(&self.secrets))?;
        Ok(Verified::new(
            OffsetDateTime::from_unix_timestamp(seconds).ok(),
            index,
        ))
    }

    fn identify(&self, body: &[u8], headers: &Headers) -> Result<Identity, IdentifyError> {
        payload::identify(body, headers)
    }

    fn handshake(&self, body: &[u8], _headers: &Headers) -> Option<Handshake> {
        payload::handshake(body)
    }
}

impl Slack {
    /// The window check on whole seconds, bounds included on both sides.
    fn check_window(&self, timestamp: i64, now: OffsetDateTime) -> Result<(), VerifyError> {
        let Some(tolerance) = self.tolerance else {
            return Ok(());
        };
        // i128 so that no i64 timestamp can overflow the difference.
        let age = i128::from(now.unix_timestamp()) - i128::from(timestamp);
        let limit = i128::from(tolerance.as_secs());
        if age > limit || -age > limit {
            return Err(VerifyError::TimestampOutsideTolerance {
                skew_seconds: i64::try_from(age).unwrap_or(if age > 0 {
                    i64::MAX
                } else {
                    i64::MIN
                }),
                tolerance_seconds: tolerance.as_secs(),
            });
        }
        Ok(())
    }
}

/// The tag of a signature header: exactly `v0=` and 64 lowercase hex digits,
/// the form python-slack-sdk compares the whole header text with.
fn parse_signature(value: &[u8]) -> Result<[u8; crate::secret::TAG_LEN], VerifyError> {
    if value.is_empty() {
        return Err(VerifyError::MalformedHeader {
            header: SIGNATURE,
            reason: "the value is empty",
        });
    }
    let hex = value
        .strip_prefix(V0)
        .and_then(|rest| rest.strip_prefix(b"="))
        .ok_or(VerifyError::NoSupportedSignature {
            header: SIGNATURE,
            scheme: "v0",
        })?;
    decode_lower_hex(hex).ok_or(VerifyError::MalformedHeader {
        header: SIGNATURE,
        reason: "expected `v0=` followed by exactly 64 lowercase hex digits",
    })
}

/// The timestamp header as the Unix time in seconds: one or more ASCII
/// digits (Slack sends nothing else), within `i64`.
fn parse_timestamp(text: &[u8]) -> Result<i64, VerifyError> {
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return Err(VerifyError::MalformedHeader {
            header: TIMESTAMP,
            reason: "expected the Unix time in seconds, as ASCII digits only",
        });
    }
    text.iter()
        .try_fold(0i64, |value, digit| {
            value.checked_mul(10)?.checked_add(i64::from(digit - b'0'))
        })
        .ok_or(VerifyError::MalformedHeader {
            header: TIMESTAMP,
            reason: "the Unix time is out of range",
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_plain_digits_within_i64() {
        assert_eq!(parse_timestamp(b"1700000000").unwrap(), 1_700_000_000);
        assert_eq!(parse_timestamp(b"0").unwrap(), 0);
        assert_eq!(parse_timestamp(b"007").unwrap(), 7);
        assert_eq!(parse_timestamp(b"9223372036854775807").unwrap(), i64::MAX);
        for bad in [
            &b""[..],
            b" 12",
            b"12 ",
            b"+12",
            b"-12",
            b"1_2",
            b"1.5",
            b"1e3",
            b"0x1f",
            b"\xd9\xa1",
            b"9223372036854775808",
        ] {
            assert!(
                parse_timestamp(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn signatures_are_v0_and_lowercase_hex() {
        let hex = "ab".repeat(32);
        assert_eq!(
            parse_signature(format!("v0={hex}").as_bytes()).unwrap(),
            [0xab; 32]
        );
        assert!(matches!(
            parse_signature(format!("v1={hex}").as_bytes()),
            Err(VerifyError::NoSupportedSignature { .. })
        ));
        assert!(matches!(
            parse_signature(hex.as_bytes()),
            Err(VerifyError::NoSupportedSignature { .. })
        ));
        assert!(matches!(
            parse_signature(format!("v0={}", hex.to_uppercase()).as_bytes()),
            Err(VerifyError::MalformedHeader { .. })
        ));
        assert!(matches!(
            parse_signature(format!("v0={hex}=").as_bytes()),
            Err(VerifyError::MalformedHeader { .. })
        ));
        assert!(matches!(
            parse_signature(b""),
            Err(VerifyError::MalformedHeader { .. })
        ));
    }
}
