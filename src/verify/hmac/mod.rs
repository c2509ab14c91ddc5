//! [`Hmac`]: a configurable HMAC verifier for the long tail of providers
//! that sign a payload with a shared secret: header name, prefix, hex or
//! base64, SHA-256 or SHA-512 (SHA-1 only by an `insecure_` opt-in), a
//! signed-payload template, an optional timestamp with a tolerance, and the
//! event id from a header or the body ([`DedupKey`]).

mod mac;
mod template;

use std::fmt;
use std::time::Duration;

use time::OffsetDateTime;

use self::mac::{Algorithm, KeyedSecrets};
pub use self::template::TemplateError;
use self::template::{Piece, Template};
use super::{check_secrets, mismatch, ConfigError, IdentifyError, Identity, ProviderProfile};
use super::{Verified, Verifier, VerifyError};
use crate::dedup::DedupKey;
use crate::headers::{as_text, Headers};
use crate::secret::{Secret, SecretSet};

/// How the signature is written in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SignatureEncoding {
    /// Hex digits, either case (the default).
    #[default]
    Hex,
    /// Standard base64 with padding (`+`, `/`, `=`).
    Base64,
    /// URL-safe base64 (`-`, `_`), padded or not.
    Base64Url,
}

/// Where the event's kind (the routing key of handlers) comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KindSource {
    /// Always this kind (the default: `event`).
    Fixed(String),
    /// The single value of this header.
    Header(String),
    /// The string at this JSON pointer in the body (RFC 6901, e.g. `/type`).
    JsonPointer(String),
}

/// Verifies deliveries of a provider that signs with an HMAC and a shared
/// secret, configured field by field: see [`HmacBuilder`] for every setting.
///
/// ```
/// use hookgate::{DedupKey, Headers, Hmac, SignatureEncoding, Verifier};
/// use time::OffsetDateTime;
///
/// // Acme signs `{timestamp}.{body}` with HMAC-SHA256, base64, in
/// // `Acme-Signature: v1=<base64>`; its event id is in `Acme-Event-Id`.
/// let acme = Hmac::builder("acme", "acme-secret")
///     .signature_header("Acme-Signature")
///     .prefix("v1=")
///     .encoding(SignatureEncoding::Base64)
///     .template("{timestamp}.{body}")
///     .timestamp_header("Acme-Timestamp", std::time::Duration::from_secs(300))
///     .dedup(DedupKey::header("Acme-Event-Id"))
///     .kind_pointer("/type")
///     .build()?;
///
/// let body = br#"{"type":"invoice.paid"}"#;
/// let now = OffsetDateTime::from_unix_timestamp(1_700_000_000)?;
/// let signature = acme.sign(0, body, &Headers::from_pairs([("Acme-Timestamp", "1700000000")]))?;
/// let headers = Headers::from_pairs([
///     ("Acme-Signature", format!("v1={signature}")),
///     ("Acme-Timestamp", "1700000000".to_owned()),
///     ("Acme-Event-Id", "ev_1".to_owned()),
/// ]);
/// acme.verify(body, &headers, now)?;
/// let identity = acme.identify(body, &headers)?;
/// assert_eq!((identity.id.as_str(), identity.kind.as_str()), ("ev_1", "invoice.paid"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Hmac {
    name: String,
    secrets: SecretSet,
    keyed: KeyedSecrets,
    header: &'static str,
    prefix: Vec<u8>,
    encoding: SignatureEncoding,
    separator: Option<u8>,
    template: Template,
    id_header: Option<&'static str>,
    timestamp: Option<(&'static str, Duration)>,
    dedup: DedupKey,
    kind: KindSource,
    profile: ProviderProfile,
}

/// Settings of an [`Hmac`] verifier.
#[derive(Debug, Clone)]
#[must_use = "call `.build()` to get the verifier"]
pub struct HmacBuilder {
    name: String,
    secrets: SecretSet,
    header: Option<String>,
    prefix: String,
    encoding: SignatureEncoding,
    algorithm: Algorithm,
    separator: Option<u8>,
    template: String,
    id_header: Option<String>,
    timestamp: Option<(String, Duration)>,
    dedup: Option<DedupKey>,
    kind: KindSource,
    profile: ProviderProfile,
}

/// Why an [`Hmac`] verifier could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HmacConfigError {
    /// A secret is empty.
    #[error(transparent)]
    Secret(#[from] ConfigError),
    /// No signature header was named.
    #[error("name the header that carries the signature with `signature_header`")]
    NoSignatureHeader,
    /// A header name is empty.
    #[error("the {0} header name is empty")]
    EmptyHeaderName(&'static str),
    /// The template cannot be used.
    #[error("the signed-payload template: {0}")]
    Template(#[from] TemplateError),
    /// Nothing says where the event id comes from.
    #[error("say where the event id comes from: `id_header` or `dedup`")]
    NoId,
    /// The dedup key cannot work.
    #[error("the dedup key: {0}")]
    DedupKey(#[from] crate::dedup::DedupKeyError),
    /// A zero tolerance would refuse every delivery a clock tick late.
    #[error("the timestamp tolerance must be at least one second")]
    ZeroTolerance,
}

impl Hmac {
    /// Starts a builder for the provider `name` (its name in idempotency keys,
    /// routes and outcomes) with the given secret, or set of secrets.
    pub fn builder(name: impl Into<String>, secrets: impl Into<SecretSet>) -> HmacBuilder {
        HmacBuilder {
            name: name.into(),
            secrets: secrets.into(),
            header: None,
            prefix: String::new(),
            encoding: SignatureEncoding::Hex,
            algorithm: Algorithm::Sha256,
            separator: None,
            template: "{body}".to_owned(),
            id_header: None,
            timestamp: None,
            dedup: None,
            kind: KindSource::Fixed("event".to_owned()),
            profile: ProviderProfile::default(),
        }
    }

    /// The secrets this verifier accepts.
    pub fn secrets(&self) -> &SecretSet {
        &self.secrets
    }

    /// The signature of `body` with the secret at `index`, encoded as the
    /// header carries it (without the prefix), the template filled from
    /// `headers`: for tests and senders. `None` when `index` is out of range.
    ///
    /// # Errors
    /// What [`Verifier::verify`] would say of a header the template needs.
    pub fn sign(
        &self,
        index: usize,
        body: &[u8],
        headers: &Headers,
    ) -> Result<String, VerifyError> {
        let parts = self.parts(body, headers)?;
        let tag = self
            .keyed
            .tag(index, &parts)
            .ok_or(VerifyError::MalformedHeader {
                header: self.header,
                reason: "no secret at this index",
            })?;
        Ok(mac::encode(&tag, self.encoding))
    }

    /// The template's pieces, filled from the delivery.
    fn parts<'a>(
        &'a self,
        body: &'a [u8],
        headers: &'a Headers,
    ) -> Result<Vec<&'a [u8]>, VerifyError> {
        let mut parts = Vec::with_capacity(self.template.pieces.len());
        for piece in &self.template.pieces {
            parts.push(match piece {
                Piece::Literal(bytes) => bytes.as_slice(),
                Piece::Body => body,
                Piece::Id => single(headers, self.id_header.unwrap_or("id"))?,
                Piece::Timestamp => single(headers, self.timestamp.map_or("timestamp", |t| t.0))?,
                Piece::Header(name) => single(headers, name)?,
            });
        }
        Ok(parts)
    }

    /// Checks the timestamp header against `now`, returning the signed time.
    fn check_timestamp(
        &self,
        headers: &Headers,
        now: OffsetDateTime,
    ) -> Result<Option<OffsetDateTime>, VerifyError> {
        let Some((header, tolerance)) = self.timestamp else {
            return Ok(None);
        };
        let signed =
            parse_unix_seconds(single(headers, header)?).ok_or(VerifyError::MalformedHeader {
                header,
                reason: "expected Unix seconds (ASCII digits)",
            })?;
        let skew = now.unix_timestamp().saturating_sub(signed);
        let tolerance_seconds = tolerance.as_secs();
        if skew.unsigned_abs() > tolerance_seconds {
            return Err(VerifyError::TimestampOutsideTolerance {
                skew_seconds: skew,
                tolerance_seconds,
            });
        }
        Ok(OffsetDateTime::from_unix_timestamp(signed).ok())
    }
}

/// The single raw value of a header the signature needs.
fn single<'h>(headers: &'h Headers, name: &'static str) -> Result<&'h [u8], VerifyError> {
    headers
        .get_bytes(name)?
        .ok_or(VerifyError::MissingHeader(name))
}

/// Unix seconds written as 1 to 18 ASCII digits.
fn parse_unix_seconds(text: &[u8]) -> Option<i64> {
    if text.is_empty() || text.len() > 18 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// Leaks a configured header name once, so errors can carry it as the
/// built-in verifiers' `&'static str` names (a few bytes per verifier built).
fn leak(name: &str) -> &'static str {
    Box::leak(name.trim().to_owned().into_boxed_str())
}

impl HmacBuilder {
    /// Also accepts this secret (keep the old one while you rotate secrets).
    pub fn secret(mut self, secret: impl Into<Secret>) -> Self {
        self.secrets.push(secret.into());
        self
    }

    /// The header that carries the signature (required; matched
    /// case-insensitively). Its presence is how the pipeline detects the
    /// provider.
    pub fn signature_header(mut self, name: impl Into<String>) -> Self {
        self.header = Some(name.into());
        self
    }

    /// Text the header value starts with before the signature (`sha256=`,
    /// `v1=`); compared exactly. Default: none.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How the signature is encoded. Default: [`SignatureEncoding::Hex`].
    pub fn encoding(mut self, encoding: SignatureEncoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// HMAC-SHA512 instead of the default HMAC-SHA256.
    pub fn sha512(mut self) -> Self {
        self.algorithm = Algorithm::Sha512;
        self
    }

    /// HMAC-SHA1, for a provider that still signs with it (older payment
    /// gateways and messaging APIs). SHA-1 HMAC is not broken as a MAC
    /// today, but SHA-1 is deprecated and the 160-bit tag is short: use it
    /// only when the provider offers nothing else. The name says so, so that
    /// a review sees it.
    pub fn insecure_sha1(mut self) -> Self {
        self.algorithm = Algorithm::Sha1;
        self
    }

    /// The header holds several signatures separated by this byte (a space,
    /// a comma), each with the prefix; any one may match (senders rotating
    /// secrets sign with both). Default: one signature.
    pub fn several_signatures(mut self, separator: u8) -> Self {
        self.separator = Some(separator);
        self
    }

    /// What is signed: literal text with `{body}` (required), `{id}` (the id
    /// header), `{timestamp}` (the timestamp header, as sent) and
    /// `{header:Name}` placeholders; `{{` and `}}` for literal braces.
    /// Default: `{body}`.
    pub fn template(mut self, template: impl Into<String>) -> Self {
        self.template = template.into();
        self
    }

    /// The header holding the delivery's id: the event id (unless
    /// [`dedup`](Self::dedup) says otherwise) and `{id}` in the template.
    pub fn id_header(mut self, name: impl Into<String>) -> Self {
        self.id_header = Some(name.into());
        self
    }

    /// The header holding the signed Unix time in seconds, and how far it
    /// may be from the clock, on both sides (inclusive). Default: none (no
    /// replay window: deduplicate on the id).
    pub fn timestamp_header(mut self, name: impl Into<String>, tolerance: Duration) -> Self {
        self.timestamp = Some((name.into(), tolerance));
        self
    }

    /// Where the event id comes from. Default: the id header.
    pub fn dedup(mut self, key: DedupKey) -> Self {
        self.dedup = Some(key);
        self
    }

    /// The kind is always `kind`. Default: `event`.
    pub fn kind(mut self, kind: impl Into<String>) -> Self {
        self.kind = KindSource::Fixed(kind.into());
        self
    }

    /// The kind is the value of this header.
    pub fn kind_header(mut self, name: impl Into<String>) -> Self {
        self.kind = KindSource::Header(name.into());
        self
    }

    /// The kind is the string at this JSON pointer in the body.
    pub fn kind_pointer(mut self, pointer: impl Into<String>) -> Self {
        self.kind = KindSource::JsonPointer(pointer.into());
        self
    }

    /// The provider's profile (body limit, answer time, retention, journaled
    /// headers). Default: [`ProviderProfile::default`]. Never list the
    /// signature header in `journal_headers`.
    pub fn profile(mut self, profile: ProviderProfile) -> Self {
        self.profile = profile;
        self
    }

    /// Builds the verifier.
    ///
    /// # Errors
    /// [`HmacConfigError`] for a setting that cannot work.
    pub fn build(self) -> Result<Hmac, HmacConfigError> {
        check_secrets(&self.secrets)?;
        let header = self.header.ok_or(HmacConfigError::NoSignatureHeader)?;
        let named = |name: &str, what| {
            if name.trim().is_empty() {
                Err(HmacConfigError::EmptyHeaderName(what))
            } else {
                Ok(leak(name))
            }
        };
        let header = named(&header, "signature")?;
        let id_header = self
            .id_header
            .as_deref()
            .map(|h| named(h, "id"))
            .transpose()?;
        let timestamp = match &self.timestamp {
            Some((_, tolerance)) if tolerance.as_secs() == 0 => {
                return Err(HmacConfigError::ZeroTolerance)
            }
            Some((name, tolerance)) => Some((named(name, "timestamp")?, *tolerance)),
            None => None,
        };
        let template = Template::parse(&self.template)?;
        if template.uses(&Piece::Id) && id_header.is_none() {
            return Err(TemplateError::NoHeaderFor("id").into());
        }
        if template.uses(&Piece::Timestamp) && timestamp.is_none() {
            return Err(TemplateError::NoHeaderFor("timestamp").into());
        }
        let dedup = match (self.dedup, id_header) {
            (Some(key), _) => key,
            (None, Some(id)) => DedupKey::header(id),
            (None, None) => return Err(HmacConfigError::NoId),
        };
        if dedup.is_provider_default() {
            return Err(HmacConfigError::NoId);
        }
        dedup.check()?;
        let mut profile = self.profile;
        if !profile.journal_headers.is_empty() {
            // The signature header is never journaled, whatever the profile says.
            let kept: Vec<&'static str> = profile
                .journal_headers
                .iter()
                .copied()
                .filter(|h| !h.eq_ignore_ascii_case(header))
                .collect();
            profile.journal_headers = Box::leak(kept.into_boxed_slice());
        }
        Ok(Hmac {
            keyed: KeyedSecrets::new(self.algorithm, &self.secrets),
            name: self.name,
            secrets: self.secrets,
            header,
            prefix: self.prefix.into_bytes(),
            encoding: self.encoding,
            separator: self.separator,
            template,
            id_header,
            timestamp,
            dedup,
            kind: self.kind,
            profile,
        })
    }
}

impl Verifier for Hmac {
    fn provider(&self) -> &str {
        &self.name
    }

    /// As set with [`HmacBuilder::profile`].
    fn profile(&self) -> ProviderProfile {
        self.profile
    }

    fn detect(&self, headers: &Headers) -> bool {
        headers.contains(self.header)
    }

    fn verify(
        &self,
        body: &[u8],
        headers: &Headers,
        now: OffsetDateTime,
    ) -> Result<Verified, VerifyError> {
        let value = single(headers, self.header)?;
        let signed_at = self.check_timestamp(headers, now)?;
        let mut candidates = Vec::with_capacity(1);
        let values: Box<dyn Iterator<Item = &[u8]>> = match self.separator {
            Some(separator) => Box::new(
                value
                    .split(move |b| *b == separator)
                    .filter(|v| !v.is_empty()),
            ),
            None => Box::new(std::iter::once(value)),
        };
        let mut prefixed = false;
        for candidate in values {
            let Some(encoded) = candidate.strip_prefix(self.prefix.as_slice()) else {
                continue;
            };
            prefixed = true;
            let tag = mac::decode(encoded, self.encoding, self.keyed.algorithm()).ok_or(
                VerifyError::MalformedHeader {
                    header: self.header,
                    reason: "the signature is not of the configured encoding and length",
                },
            )?;
            candidates.push(tag);
        }
        if !prefixed {
            return Err(VerifyError::NoSupportedSignature {
                header: self.header,
                scheme: "the configured prefix",
            });
        }
        let parts = self.parts(body, headers)?;
        let index = self
            .keyed
            .matching(&parts, &candidates)
            .ok_or_else(|| mismatch(&self.secrets))?;
        Ok(Verified::new(signed_at, index))
    }

    fn identify(&self, body: &[u8], headers: &Headers) -> Result<Identity, IdentifyError> {
        let id = self.dedup.derive(None, body, headers)?;
        let kind = match &self.kind {
            KindSource::Fixed(kind) => kind.clone(),
            KindSource::Header(name) => {
                let mut values = headers.get_all(name);
                match (values.next().and_then(as_text), values.next()) {
                    (Some(kind), None) if !kind.is_empty() => kind.to_owned(),
                    _ => return Err(IdentifyError::DedupKey(format!("kind header `{name}`"))),
                }
            }
            KindSource::JsonPointer(pointer) => {
                let json: serde_json::Value = serde_json::from_slice(body)
                    .map_err(|err| IdentifyError::InvalidJson(err.to_string()))?;
                match json.pointer(pointer) {
                    Some(serde_json::Value::String(kind)) if !kind.is_empty() => kind.clone(),
                    _ => return Err(IdentifyError::DedupKey(format!("kind at JSON `{pointer}`"))),
                }
            }
        };
        let occurred_at = self.timestamp.and_then(|(header, _)| {
            let seconds = parse_unix_seconds(headers.get_bytes(header).ok()??)?;
            OffsetDateTime::from_unix_timestamp(seconds).ok()
        });
        Ok(Identity::new(id, kind).occurred_at(occurred_at))
    }
}

impl fmt::Debug for Hmac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hmac")
            .field("name", &self.name)
            .field("secrets", &self.secrets)
            .field("algorithm", &self.keyed.algorithm())
            .field("header", &self.header)
            .field("encoding", &self.encoding)
            .field("template", &self.template)
            .field("timestamp", &self.timestamp)
            .field("dedup", &self.dedup)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}
