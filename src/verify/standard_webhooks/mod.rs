//! Standard Webhooks (and Svix): `webhook-signature: v1,<base64> …` over
//! `{id}.{timestamp}.{body}`.
//!
//! Rules follow the official `standardwebhooks` libraries
//! (`standard-webhooks/standard-webhooks`, `libraries/{rust,go,javascript,python}`)
//! and the Svix libraries that wrap them (`svix/svix-webhooks`): the key is the
//! base64 after an optional `whsec_` prefix; the signed content is the id, the
//! timestamp as an integer and the raw body, joined by `.`; the signature header
//! is a space-separated list of `version,signature` entries of which any `v1`
//! entry may match; the timestamp must be within 300 s of the clock on either
//! side, bounds included. The README's "Standard Webhooks" section lists every
//! deliberate difference.

use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine as _;
use subtle::Choice;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use zeroize::Zeroizing;

#[cfg(feature = "ed25519")]
mod ed25519;
mod header;

#[cfg(feature = "ed25519")]
use ed25519::{decode_public_key, PublicKeys, V1A};
use header::{parse_timestamp, signatures, Decimal, Field, Found};

use super::encoding::decode_base64_tag;
use super::json;
use super::{
    optional_header, required_header, ConfigError, IdentifyError, Identity, ProviderProfile,
    Verified, Verifier, VerifyError,
};
use crate::headers::Headers;
use crate::secret::{tags_equal, Secret, SecretSet};

/// The prefix of a serialised Standard Webhooks signing secret.
const SECRET_PREFIX: &[u8] = b"whsec_";

/// The signature identifier of HMAC-SHA256 signatures.
const V1: &[u8] = b"v1";

/// The key bytes of a serialised secret: the standard base64 after an optional
/// `whsec_` prefix, canonical, with its `=` padding or without any.
///
/// # Errors
/// Why the text is not such a secret.
pub(crate) fn decode_secret(text: &[u8]) -> Result<Zeroizing<Vec<u8>>, &'static str> {
    if text.first().is_some_and(u8::is_ascii_whitespace)
        || text.last().is_some_and(u8::is_ascii_whitespace)
    {
        return Err("the secret has surrounding whitespace");
    }
    let encoded = text.strip_prefix(SECRET_PREFIX).unwrap_or(text);
    STANDARD
        .decode(encoded)
        .or_else(|_| STANDARD_NO_PAD.decode(encoded))
        .map(Zeroizing::new)
        .map_err(|_| "expected standard base64 after the optional `whsec_` prefix, as the endpoint's secret is shown")
}

/// How a configured secret is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// `whsec_` + base64, as Standard Webhooks senders show it.
    Serialized,
    /// The key bytes themselves.
    Raw,
}

/// Verifies Standard Webhooks deliveries, such as those Svix sends.
///
/// Default behaviour is the official `standardwebhooks` libraries' `verify`
/// (and Svix's, which also reads `svix-id`, `svix-timestamp` and `svix-signature`):
/// the HMAC-SHA256, under one of the secrets, of `{id}.{timestamp}.{body}` must
/// equal one of the `v1` signatures of the signature header, and the signed
/// timestamp must be at most 300 s away from the clock, in the past or in the
/// future. Where a `svix-` header is present it is read instead of its
/// `webhook-` counterpart, one header at a time, as the Svix JavaScript, Python
/// and Rust libraries do. See the README's "Verification rules" for every rule.
///
/// [`identify`](Verifier::identify) takes the dedup id from the id header (the
/// same across Svix's retries) and the kind from the body's top-level string
/// `type`; a body that is not a JSON object or array, or has no such `type`,
/// gets the kind [`StandardWebhooks::UNTYPED_KIND`].
///
/// ```
/// use hookgate::{testing, Headers, StandardWebhooks, Verifier};
/// use time::OffsetDateTime;
///
/// let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// let verifier = StandardWebhooks::builder(secret).build()?;
/// let body = br#"{"type":"invoice.paid","data":{"id":"in_1"}}"#;
/// let now = OffsetDateTime::from_unix_timestamp(1_700_000_000)?;
/// let headers = Headers::from_pairs(testing::standard_webhooks_headers(secret, "msg_1", body, now));
/// let verified = verifier.verify(body, &headers, now)?;
/// assert_eq!(verified.signed_at, Some(now));
/// let identity = verifier.identify(body, &headers)?;
/// assert_eq!((identity.id.as_str(), identity.kind.as_str()), ("msg_1", "invoice.paid"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct StandardWebhooks {
    provider: Box<str>,
    /// The HMAC keys (decoded), in the order they were configured; `None` for a
    /// verifier of public keys only.
    secrets: Option<SecretSet>,
    /// The sender's ed25519 public keys for `v1a` signatures.
    #[cfg(feature = "ed25519")]
    public_keys: PublicKeys,
    tolerance: Option<Duration>,
    /// Whether a raw secret has surrounding whitespace (decoded keys are random
    /// bytes, so the hint means nothing for them).
    whitespace_hint: bool,
}

/// Settings of a [`StandardWebhooks`] verifier.
#[derive(Debug, Clone)]
#[must_use = "call `.build()` to get the verifier"]
pub struct StandardWebhooksBuilder {
    provider: Box<str>,
    secrets: Vec<(Secret, Form)>,
    /// `whpk_` public keys as given, decoded by `build`.
    #[cfg(feature = "ed25519")]
    public_keys: Vec<String>,
    tolerance: Option<Duration>,
}

impl StandardWebhooks {
    /// The header Standard Webhooks senders sign with (matched case-insensitively).
    pub const SIGNATURE_HEADER: &'static str = "webhook-signature";

    /// The header Svix signs with, read instead of [`Self::SIGNATURE_HEADER`] when
    /// present.
    pub const SVIX_SIGNATURE_HEADER: &'static str = "svix-signature";

    /// The default tolerance on either side of the clock: 300 s, as every official
    /// library has it.
    pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

    /// The default provider name, [`Verifier::provider`].
    pub const DEFAULT_PROVIDER: &'static str = "standard-webhooks";

    /// The kind of a delivery whose body names none: not a JSON object or array,
    /// or without a non-empty top-level string `type`.
    pub const UNTYPED_KIND: &'static str = "untyped";

    /// Starts a builder accepting the given secret (or set of secrets) in the form
    /// senders show it: `whsec_` followed by standard base64 (the prefix and the
    /// `=` padding are optional). The secrets are decoded by
    /// [`build`](StandardWebhooksBuilder::build).
    pub fn builder(secrets: impl Into<SecretSet>) -> StandardWebhooksBuilder {
        StandardWebhooksBuilder::with(secrets.into(), Form::Serialized)
    }

    /// Starts a builder accepting the given key bytes (or set of them) as they
    /// are, not base64-decoded (the libraries' `format: "raw"`, `from_bytes`,
    /// `NewWebhookRaw`).
    pub fn builder_raw(secrets: impl Into<SecretSet>) -> StandardWebhooksBuilder {
        StandardWebhooksBuilder::with(secrets.into(), Form::Raw)
    }

    /// Starts a builder accepting `v1a` (ed25519) signatures made with the key
    /// whose public half is `public_key`, serialised as the specification has it:
    /// `whpk_` followed by the standard base64 of its 32 bytes (the prefix and
    /// the `=` padding are optional). The key is decoded by
    /// [`build`](StandardWebhooksBuilder::build). Add HMAC secrets with
    /// [`secret`](StandardWebhooksBuilder::secret) to accept `v1` signatures too.
    #[cfg(feature = "ed25519")]
    #[cfg_attr(docsrs, doc(cfg(feature = "ed25519")))]
    pub fn builder_public_key(public_key: impl AsRef<str>) -> StandardWebhooksBuilder {
        StandardWebhooksBuilder {
            provider: Self::DEFAULT_PROVIDER.into(),
            secrets: Vec::new(),
            public_keys: vec![public_key.as_ref().to_owned()],
            tolerance: Some(Self::DEFAULT_TOLERANCE),
        }
    }

    /// The HMAC keys this verifier accepts, decoded, in the order they were
    /// added; `None` for a verifier built from public keys alone
    /// (`builder_public_key`, `ed25519` feature).
    pub fn secrets(&self) -> Option<&SecretSet> {
        self.secrets.as_ref()
    }

    /// The tolerance on either side of the clock; `None` when the timestamp check
    /// is disabled.
    pub fn tolerance(&self) -> Option<Duration> {
        self.tolerance
    }
}

impl StandardWebhooksBuilder {
    fn with(set: SecretSet, form: Form) -> Self {
        Self {
            provider: StandardWebhooks::DEFAULT_PROVIDER.into(),
            secrets: set.iter().map(|s| (s.clone(), form)).collect(),
            #[cfg(feature = "ed25519")]
            public_keys: Vec::new(),
            tolerance: Some(StandardWebhooks::DEFAULT_TOLERANCE),
        }
    }

    /// Also accepts this `whsec_…` secret (keep the old one while the sender
    /// rotates secrets).
    pub fn secret(mut self, secret: impl Into<Secret>) -> Self {
        self.secrets.push((secret.into(), Form::Serialized));
        self
    }

    /// Also accepts these key bytes, used as they are.
    pub fn raw_secret(mut self, secret: impl Into<Secret>) -> Self {
        self.secrets.push((secret.into(), Form::Raw));
        self
    }

    /// Also accepts `v1a` (ed25519) signatures made with the key whose public half
    /// is `public_key` (`whpk_` + base64, see
    /// [`StandardWebhooks::builder_public_key`]). Public keys are numbered after
    /// the secrets, in the order added.
    #[cfg(feature = "ed25519")]
    #[cfg_attr(docsrs, doc(cfg(feature = "ed25519")))]
    pub fn public_key(mut self, public_key: impl AsRef<str>) -> Self {
        self.public_keys.push(public_key.as_ref().to_owned());
        self
    }

    /// The provider name (in idempotency keys, routes and outcomes). Default:
    /// `"standard-webhooks"`. Give each sender its own name when you receive
    /// from several platforms that sign with Standard Webhooks (each with its
    /// own secret), so that a pipeline can hold one verifier per sender.
    pub fn provider_name(mut self, name: impl Into<String>) -> Self {
        self.provider = name.into().into_boxed_str();
        self
    }

    /// How far the signed timestamp may be from the clock, on either side.
    /// Default: 300 s. A timestamp exactly `tolerance` away passes, one second
    /// more fails (the libraries check `now - timestamp > tolerance` and
    /// `timestamp > now + tolerance`). Sub-second parts are ignored, as
    /// timestamps are whole seconds. Use
    /// [`insecure_skip_timestamp_check`](Self::insecure_skip_timestamp_check) to
    /// disable the check.
    pub fn tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = Some(tolerance);
        self
    }

    /// Disables the timestamp check (the libraries' `verify_ignoring_timestamp`),
    /// so a captured delivery can be replayed forever. Only for offline
    /// processing of stored deliveries.
    pub fn insecure_skip_timestamp_check(mut self) -> Self {
        self.tolerance = None;
        self
    }

    /// Builds the verifier.
    ///
    /// # Errors
    /// [`ConfigError::InvalidKey`] when a `whsec_` secret is not base64 (or, with
    /// the `ed25519` feature, a `whpk_` public key is not one; public keys are
    /// numbered after the secrets); [`ConfigError::EmptySecret`] when a secret is
    /// empty (or decodes to nothing).
    pub fn build(self) -> Result<StandardWebhooks, ConfigError> {
        let mut keys: Option<SecretSet> = None;
        let mut whitespace_hint = false;
        for (index, (secret, form)) in self.secrets.iter().enumerate() {
            let key = match form {
                Form::Serialized => {
                    let bytes = decode_secret(secret.expose())
                        .map_err(|reason| ConfigError::InvalidKey { index, reason })?;
                    Secret::new(bytes.to_vec())
                }
                Form::Raw => {
                    whitespace_hint |= secret.has_surrounding_whitespace();
                    secret.clone()
                }
            };
            if key.is_empty() {
                return Err(ConfigError::EmptySecret { index });
            }
            match &mut keys {
                Some(set) => set.push(key),
                None => keys = Some(SecretSet::new(key)),
            }
        }
        #[cfg(feature = "ed25519")]
        let public_keys = {
            let mut public_keys = PublicKeys::default();
            for (i, text) in self.public_keys.iter().enumerate() {
                let key = decode_public_key(text.as_bytes()).map_err(|reason| {
                    ConfigError::InvalidKey {
                        index: self.secrets.len() + i,
                        reason,
                    }
                })?;
                public_keys.push(key);
            }
            public_keys
        };
        #[cfg(feature = "ed25519")]
        let no_key = keys.is_none() && public_keys.is_empty();
        #[cfg(not(feature = "ed25519"))]
        let no_key = keys.is_none();
        if no_key {
            // Unreachable: every builder starts from a secret set (never empty)
            // or a public key. Kept as an error rather than a panic.
            return Err(ConfigError::EmptySecret { index: 0 });
        }
        Ok(StandardWebhooks {
            provider: self.provider,
            secrets: keys,
            #[cfg(feature = "ed25519")]
            public_keys,
            tolerance: self.tolerance,
            whitespace_hint,
        })
    }
}

impl Verifier for StandardWebhooks {
    fn provider(&self) -> &str {
        &self.provider
    }

    /// Svix waits 15 s for an answer (the specification recommends 15–30 s) and
    /// retries over about 27 hours (immediately, then after 5 s, 5 min, 30 min,
    /// 2 h, 5 h, 10 h and 10 h); the specification's example schedule spans
    /// 75 h 35 min. Completed events are remembered 4 days, beyond both. The id
    /// and timestamp headers are signed, and the kind is read from the signed
    /// body, so `signs_identity` is `true`.
    fn profile(&self) -> ProviderProfile {
        ProviderProfile {
            answer_within: Duration::from_secs(15),
            retention: Duration::from_secs(4 * 24 * 60 * 60),
            signs_identity: true,
            journal_headers: &[
                "content-type",
                "user-agent",
                "webhook-id",
                "webhook-timestamp",
                "svix-id",
                "svix-timestamp",
            ],
            delivery_id_headers: &["svix-id", "webhook-id"],
            ..ProviderProfile::default()
        }
    }

    fn detect(&self, headers: &Headers) -> bool {
        headers.contains(Self::SIGNATURE_HEADER) || headers.contains(Self::SVIX_SIGNATURE_HEADER)
    }

    fn verify(
        &self,
        body: &[u8],
        headers: &Headers,
        now: OffsetDateTime,
    ) -> Result<Verified, VerifyError> {
        let found = Found::scan(headers);
        let (_, id) = found.text(Field::Id)?;
        let (signature_name, signature) = found.text(Field::Signature)?;
        let (timestamp_name, timestamp) = found.text(Field::Timestamp)?;
        let timestamp = parse_timestamp(timestamp_name, timestamp)?;
        // The libraries check the window before the signature.
        self.check_window(timestamp, now)?;
        let signature = signature.as_bytes();
        if !signatures(signature).any(|(version, _)| self.supports(version)) {
            return Err(VerifyError::NoSupportedSignature {
                header: signature_name,
                scheme: self.schemes(),
            });
        }
        let rendered = Decimal::new(timestamp);
        let parts: [&[u8]; 5] = [id.as_bytes(), b".", rendered.as_bytes(), b".", body];
        let index = self
            .matching_key(&parts, signature)
            .ok_or(VerifyError::SignatureMismatch {
                secret_has_whitespace: self.whitespace_hint,
            })?;
        Ok(Verified::new(
            OffsetDateTime::from_unix_timestamp(timestamp).ok(),
            index,
        ))
    }

    fn identify(&self, body: &[u8], headers: &Headers) -> Result<Identity, IdentifyError> {
        let id = required_header(headers, Field::Id.name_in(headers))?;
        let payload = Payload::read(body)?;
        let kind = payload
            .kind
            .unwrap_or_else(|| Self::UNTYPED_KIND.to_owned());
        let mut identity = Identity::new(id, kind).occurred_at(payload.timestamp);
        if let Some(timestamp) = optional_header(headers, Field::Timestamp.name_in(headers)) {
            identity = identity.with_metadata("webhook_timestamp", timestamp);
        }
        Ok(identity)
    }
}

impl StandardWebhooks {
    /// Whether entries of this version can match a configured key.
    fn supports(&self, version: &[u8]) -> bool {
        #[cfg(feature = "ed25519")]
        if version == V1A {
            return !self.public_keys.is_empty();
        }
        version == V1 && self.secrets.is_some()
    }

    /// The signature versions this verifier checks, for
    /// [`VerifyError::NoSupportedSignature`].
    fn schemes(&self) -> &'static str {
        #[cfg(feature = "ed25519")]
        if !self.public_keys.is_empty() {
            return if self.secrets.is_some() {
                "v1 or v1a"
            } else {
                "v1a"
            };
        }
        "v1"
    }

    /// Index of the first key matching a signature of the header: the secrets'
    /// `v1` first (cheap), then the public keys' `v1a`, numbered after the
    /// secrets.
    fn matching_key(&self, parts: &[&[u8]], signature: &[u8]) -> Option<usize> {
        if let Some(index) = self
            .secrets
            .as_ref()
            .and_then(|secrets| matching_secret(secrets, parts, signature))
        {
            return Some(index);
        }
        #[cfg(feature = "ed25519")]
        if let Some(index) = self.public_keys.matching(parts, signature) {
            return Some(self.secrets.as_ref().map_or(0, SecretSet::len) + index);
        }
        None
    }

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

/// Index of the first secret whose tag over `parts` equals any `v1` value of
/// the signature header. Each secret's tag is computed once and compared with
/// every `v1` value in constant time; values that are not the 44 characters of
/// a padded canonical base64 tag never match (the libraries compare the text
/// with their own canonical base64).
fn matching_secret(secrets: &SecretSet, parts: &[&[u8]], signature: &[u8]) -> Option<usize> {
    (0..secrets.len()).find(|&index| {
        let Some(tag) = secrets.tag(index, parts) else {
            return false;
        };
        let mut found = Choice::from(0);
        for (version, value) in signatures(signature) {
            if version == V1 {
                if let Some(candidate) = decode_base64_tag(value) {
                    found |= tags_equal(&tag, &candidate);
                }
            }
        }
        bool::from(found)
    })
}

/// What identification reads of the body.
#[derive(Debug, Default)]
struct Payload {
    /// The top-level `type`, when a non-empty string.
    kind: Option<String>,
    /// The top-level `timestamp` (when the event occurred), when an RFC 3339 string.
    timestamp: Option<OffsetDateTime>,
}

impl Payload {
    /// Reads a JSON object or array body (which must then be a document
    /// serde_json accepts, as `Event::json` needs); any other body (empty,
    /// text, form-encoded, XML, a bare JSON scalar) names nothing.
    fn read(body: &[u8]) -> Result<Self, IdentifyError> {
        let first = body
            .iter()
            .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
        if !matches!(first, Some(b'{' | b'[')) {
            return Ok(Self::default());
        }
        let (mut kind, mut timestamp) = (None, None);
        // A repeated key keeps its last value, as `serde_json::Value` does.
        json::check_members(body, |key, value| match key_name(key).as_deref() {
            Some("type") => kind = Some(value),
            Some("timestamp") => timestamp = Some(value),
            _ => {}
        })
        .map_err(|e| IdentifyError::InvalidJson(e.to_string()))?;
        let string_at = |span: Option<std::ops::Range<usize>>| {
            span.and_then(|span| body.get(span))
                .filter(|text| text.first() == Some(&b'"'))
                .and_then(|text| serde_json::from_slice::<String>(text).ok())
        };
        Ok(Self {
            kind: string_at(kind).filter(|k| !k.is_empty()),
            timestamp: string_at(timestamp).and_then(|t| OffsetDateTime::parse(&t, &Rfc3339).ok()),
        })
    }
}

/// The name a top-level key's JSON text (quotes included) stands for, escapes
/// decoded as `JSON.parse` would.
fn key_name(key: &[u8]) -> Option<std::borrow::Cow<'_, str>> {
    if key.contains(&b'\\') {
        return serde_json::from_slice::<String>(key).ok().map(Into::into);
    }
    let inner = key.get(1..key.len().checked_sub(1)?)?;
    std::str::from_utf8(inner).ok().map(Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_decode_with_or_without_prefix_and_padding() {
        let key = decode_secret(b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(key.len(), 24);
        assert_eq!(
            *decode_secret(b"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap(),
            *key
        );
        assert_eq!(&**decode_secret(b"whsec_YQ==").unwrap(), b"a");
        assert_eq!(&**decode_secret(b"whsec_YQ").unwrap(), b"a");
        assert!(decode_secret(b"whsec_").unwrap().is_empty());
        assert!(decode_secret(b"whsec_YQ=").is_err());
        assert!(decode_secret(b"whsec_Y Q==").is_err());
        assert!(decode_secret(b"whsec_-_8").is_err());
        assert_eq!(
            decode_secret(b"whsec_YQ==\n").unwrap_err(),
            "the secret has surrounding whitespace"
        );
    }

    #[test]
    fn payload_reads_type_and_timestamp_of_objects_only() {
        let p = Payload::read(
            br#" {"data":{"type":"inner"},"t\u0079pe":"a.b","timestamp":"2022-11-03T20:26:10.344522Z"}"#,
        )
        .unwrap();
        assert_eq!(p.kind.as_deref(), Some("a.b"));
        assert_eq!(
            p.timestamp.map(OffsetDateTime::unix_timestamp),
            Some(1_667_507_170)
        );
        let p = Payload::read(br#"{"type":"first","type":"last","timestamp":17}"#).unwrap();
        assert_eq!((p.kind.as_deref(), p.timestamp), (Some("last"), None));
        for untyped in [
            &b""[..],
            b"hello",
            b"<xml/>",
            b"17",
            br#""type""#,
            br#"[{"type":"x"}]"#,
            br#"{"type":""}"#,
            br#"{"type":3}"#,
        ] {
            assert_eq!(Payload::read(untyped).unwrap().kind, None);
        }
        assert!(matches!(
            Payload::read(b"{\"type\":\"a\""),
            Err(IdentifyError::InvalidJson(_))
        ));
        assert!(matches!(
            Payload::read(b"[1,]"),
            Err(IdentifyError::InvalidJson(_))
        ));
    }

    #[test]
    fn keys_decode_escapes() {
        assert_eq!(key_name(br#""type""#).as_deref(), Some("type"));
        assert_eq!(key_name(br#""t\u0079pe""#).as_deref(), Some("type"));
        assert_eq!(key_name(br#""""#).as_deref(), Some(""));
        assert_eq!(key_name(b"\""), None);
    }
}
