//! Twilio: `X-Twilio-Signature: <base64>` = HMAC-SHA1 (the auth token as key)
//! over the URL Twilio called followed by the form parameters sorted by name.
//!
//! Computed as the helper libraries compute it (twilio-python
//! `twilio/request_validator.py`, twilio-node `src/webhooks/webhooks.ts`,
//! twilio-ruby `security/request_validator.rb`, twilio-go
//! `client/request_validator.go`): every parameter name immediately followed
//! by its value, names sorted, the values of a repeated name sorted with exact
//! repeats dropped (twilio-python and twilio-node); the URL tried without its
//! port and with it (the standard `443`/`80` added when it names none); for a
//! URL with a `bodySHA256` query parameter, the signature covers the URL alone
//! and the body must hash to that value.

use std::fmt;

use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

mod identify;
mod params;
mod url;

use identify::IDEMPOTENCY_TOKEN;
use params::{body_sha256, Params};
use url::{Base, Scheme, SignedUrl};

use super::encoding::{decode_base64_array, decode_lower_hex};
use super::{check_secrets, mismatch, signature_header};
use super::{
    ConfigError, IdentifyError, Identity, ProviderProfile, Verified, Verifier, VerifyError,
};
use crate::headers::Headers;
use crate::secret::{Secret, SecretSet};

type HmacSha1 = Hmac<Sha1>;

/// The header Twilio signs deliveries with.
const HEADER: &str = "X-Twilio-Signature";

/// The header a Twilio webhook rule adds when it signs with a shared key and
/// another algorithm (`key=<id>,algorithm=HMAC_SHA256`).
const SETTINGS_HEADER: &str = "X-Twilio-Webhooks-Signature-Settings";

/// Bytes in an HMAC-SHA1 tag.
const TAG_LEN: usize = 20;

/// Verifies Twilio webhook requests (Messaging, Voice, status callbacks,
/// Event Streams webhook sinks).
///
/// Twilio signs the URL it called, which a server behind a proxy or TLS
/// terminator does not see: give the public base with
/// [`TwilioBuilder::public_url`]. The URL is formed as follows:
///
/// - **With a public URL** (`https://example.com`, optionally with
///   `user:password@`, a port and a path prefix such as `/api`): its scheme,
///   authority and prefix, then the request target's path and query as
///   received (e.g. `/webhooks/twilio?x=1` →
///   `https://example.com/api/webhooks/twilio?x=1`). An absolute-form target
///   contributes its path and query only.
/// - **Without one**: the scheme set with [`TwilioBuilder::scheme_http`]
///   (https by default), the request's authority (the `Host` header, or the
///   authority of an absolute-form target, which takes precedence as RFC 9112
///   says), then the request target's path and query. The scheme is never
///   taken from the request, and `X-Forwarded-*` headers are not read.
///
/// The path and query are used byte for byte as received (never decoded or
/// re-encoded), so the request target must be handed over with
/// [`Headers::with_request`] (the `http` and `axum` integrations do);
/// without it a delivery is [`VerifyError::MissingRequestTarget`] (400).
/// Each of two URLs is then tried, the one as formed first: without its port,
/// and with its port (the scheme's standard one, 443 or 80, added when the URL
/// names none), as every helper library does.
///
/// When the query has a `bodySHA256` parameter (Twilio's JSON deliveries),
/// the signature covers the URL alone and the body's SHA-256 must equal it
/// (64 lowercase hex digits, compared in constant time):
/// [`VerifyError::BodyDigestMismatch`] otherwise. Every other body is read as
/// form parameters, whatever its `Content-Type`.
///
/// [`identify`](Verifier::identify): the dedup id is the
/// `I-Twilio-Idempotency-Token` header when present (the same on Twilio's
/// retries of one request); otherwise `<SID>:<digest>`, the delivery's SID
/// (`MessageSid`, `SmsMessageSid`, `SmsSid`, `RecordingSid`,
/// `TranscriptionSid`, `ConferenceSid`, `CallSid`, then `Sid`) and a 64-bit
/// digest of its decoded, sorted parameters, so that a repeated request
/// deduplicates while each status update (`MessageStatus=sent`, then
/// `delivered`), gather result or progress event of the same message or call
/// is its own event. Kinds: `message`, `message.status.<MessageStatus>`,
/// `recording.<RecordingStatus>`, `transcription.<TranscriptionStatus>`,
/// `conference.<StatusCallbackEvent>`, `call.status.<CallStatus>` (progress
/// callbacks), `call` (voice requests and TwiML actions), else the
/// `EventType` parameter, else `other`. Metadata: `account_sid`. A JSON body
/// (a CloudEvent, or an array of them) is named by its `id` and `type` (see
/// the README).
///
/// A delivery signed under a Twilio webhook rule with another algorithm
/// (`X-Twilio-Webhooks-Signature-Settings: …,algorithm=HMAC_SHA256`) is
/// [`VerifyError::NoSupportedSignature`] (400); with `algorithm=HMAC_SHA1` it
/// is verified as usual, so configure the rule's shared key as the token.
///
/// ```
/// use hookgate::{testing, Headers, Twilio, Verifier};
/// use time::OffsetDateTime;
///
/// let twilio = Twilio::builder("auth-token").public_url("https://example.com").build()?;
/// let body = b"AccountSid=AC1&MessageSid=SM1&Body=Hi&MessageStatus=delivered";
/// let url = "https://example.com/webhooks/twilio?tenant=7";
/// let headers = Headers::from_pairs(testing::twilio_headers("auth-token", url, body))
///     .with_request("POST", "/webhooks/twilio?tenant=7");
/// twilio.verify(body, &headers, OffsetDateTime::now_utc())?;
/// assert_eq!(twilio.identify(body, &headers)?.kind, "message.status.delivered");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Twilio {
    secrets: SecretSet,
    keys: Vec<HmacSha1>,
    base: Base,
    ids: IdSource,
}

/// Where a delivery's dedup id comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IdSource {
    /// `I-Twilio-Idempotency-Token` when present, else the signed parameters.
    TokenFirst,
    /// The signed parameters only.
    Parameters,
}

/// Settings of a [`Twilio`] verifier.
#[derive(Clone)]
#[must_use = "call `.build()` to get the verifier"]
pub struct TwilioBuilder {
    secrets: SecretSet,
    public_url: Option<String>,
    scheme: Scheme,
    ids: IdSource,
}

impl Twilio {
    /// The header Twilio signs with (matched case-insensitively).
    pub const SIGNATURE_HEADER: &'static str = HEADER;

    /// The header that names one webhook request across Twilio's retries.
    pub const IDEMPOTENCY_HEADER: &'static str = IDEMPOTENCY_TOKEN;

    /// Starts a builder accepting the given auth token (or set of tokens:
    /// keep the old one while you rotate it in the console).
    pub fn builder(auth_tokens: impl Into<SecretSet>) -> TwilioBuilder {
        TwilioBuilder {
            secrets: auth_tokens.into(),
            public_url: None,
            scheme: Scheme::Https,
            ids: IdSource::TokenFirst,
        }
    }

    /// The auth tokens this verifier accepts.
    pub fn secrets(&self) -> &SecretSet {
        &self.secrets
    }

    /// The index of the first token whose MAC over one of the URL's variants
    /// and `params` equals `candidate`.
    fn matching(
        &self,
        url: &SignedUrl<'_>,
        params: &Params<'_>,
        candidate: &[u8; TAG_LEN],
    ) -> Option<usize> {
        for variant in url.variants() {
            for (index, key) in self.keys.iter().enumerate() {
                let mut mac = key.clone();
                for piece in url.pieces(variant) {
                    mac.update(piece.as_bytes());
                }
                mac.update(url.path_and_query().as_bytes());
                for piece in params.pieces() {
                    mac.update(piece.as_bytes());
                }
                let tag: [u8; TAG_LEN] = mac.finalize().into_bytes().into();
                if bool::from(tag.ct_eq(candidate)) {
                    return Some(index);
                }
            }
        }
        None
    }
}

impl fmt::Debug for Twilio {
    /// The number of tokens and how the URL is formed; never a token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Twilio")
            .field("secrets", &self.secrets)
            .field("url", &self.base)
            .field("ids", &self.ids)
            .finish()
    }
}

impl fmt::Debug for TwilioBuilder {
    /// The public URL without any credentials it carries; never a token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let public_url = self
            .public_url
            .as_deref()
            .map(|url| match Base::public(url) {
                Ok(base) => format!("{base:?}"),
                Err(_) => "<invalid>".to_owned(),
            });
        f.debug_struct("TwilioBuilder")
            .field("secrets", &self.secrets)
            .field("public_url", &public_url)
            .field("scheme", &self.scheme)
            .field("ids", &self.ids)
            .finish()
    }
}

impl TwilioBuilder {
    /// Also accepts this auth token (keep the old one while you rotate it).
    pub fn secret(mut self, secret: impl Into<Secret>) -> Self {
        self.secrets.push(secret.into());
        self
    }

    /// The public base URL Twilio calls: `https://` or `http://`, the host
    /// (with `user:password@` and a port when the webhook URL has them), and
    /// optionally a path put before the request's path (trailing `/`
    /// dropped). No query or fragment: those come from each request. It
    /// replaces the request's scheme and authority, so `Host` is not read.
    /// Default: none (the URL is formed from `Host`).
    pub fn public_url(mut self, url: impl Into<String>) -> Self {
        self.public_url = Some(url.into());
        self
    }

    /// Without a [public URL](Self::public_url), form the URL with `http://`
    /// rather than the default `https://`: for webhooks configured with an
    /// `http://` URL, where nothing between Twilio and this server changes
    /// the scheme.
    pub fn scheme_http(mut self) -> Self {
        self.scheme = Scheme::Http;
        self
    }

    /// Stricter than the default: name every delivery `<SID>:<digest>` from
    /// its signed parameters, ignoring `I-Twilio-Idempotency-Token`. That
    /// header is not signed, so a captured request resent under a fresh token
    /// would be a new event; and since Twilio signs the decoded parameters,
    /// not the bytes, a re-encoded body also escapes a body-digest
    /// [replay guard](crate::PipelineBuilder::replay_guard). With this, both
    /// are duplicates. Twilio's retries of one request resend the same
    /// parameters, so they still deduplicate. Default: off (the token first,
    /// as Twilio documents it).
    pub fn dedup_on_parameters(mut self) -> Self {
        self.ids = IdSource::Parameters;
        self
    }

    /// Builds the verifier.
    ///
    /// # Errors
    /// [`ConfigError::EmptySecret`] when a token of the set is empty;
    /// [`ConfigError::InvalidPublicUrl`] when the public URL is not of the
    /// form above.
    pub fn build(self) -> Result<Twilio, ConfigError> {
        check_secrets(&self.secrets)?;
        let base = match &self.public_url {
            Some(url) => Base::public(url)?,
            None => Base::request(self.scheme),
        };
        let keys = self
            .secrets
            .iter()
            .map(|secret| {
                // HMAC takes keys of any length: keying cannot fail.
                <HmacSha1 as Mac>::new_from_slice(secret.expose())
                    .expect("HMAC-SHA1 accepts keys of any length")
            })
            .collect();
        Ok(Twilio {
            secrets: self.secrets,
            keys,
            base,
            ids: self.ids,
        })
    }
}

impl Verifier for Twilio {
    fn provider(&self) -> &str {
        "twilio"
    }

    /// Twilio waits 15 s for an answer (its default read timeout and total
    /// time, which a `#rt=`/`#tt=` connection override can only shorten), and
    /// by default retries a request only when the connection fails or times
    /// out, never on a non-2xx answer (unless the URL sets `#rp=5xx` or
    /// `#rp=all`): so it counts as not retrying. Its form bodies are a few
    /// KiB; the 1 MiB limit leaves room for Event Streams batches. Nothing
    /// signed dates a delivery, so completed events are remembered the
    /// default 72 h. The idempotency token is an unsigned header.
    fn profile(&self) -> ProviderProfile {
        ProviderProfile {
            body_limit: 1024 * 1024,
            answer_within: std::time::Duration::from_secs(15),
            retention: std::time::Duration::from_secs(72 * 60 * 60),
            retries: false,
            kinds_carry_action: false,
            signs_identity: false,
            identity_metadata: &[],
            journal_headers: &[
                "content-type",
                "user-agent",
                "i-twilio-idempotency-token",
                "host",
            ],
            delivery_id_headers: &["i-twilio-idempotency-token"],
        }
    }

    fn detect(&self, headers: &Headers) -> bool {
        headers.contains(HEADER)
    }

    fn verify(
        &self,
        body: &[u8],
        headers: &Headers,
        _now: OffsetDateTime,
    ) -> Result<Verified, VerifyError> {
        let value = signature_header(headers, HEADER)?.ok_or(VerifyError::MissingHeader(HEADER))?;
        if value.is_empty() {
            return Err(VerifyError::MalformedHeader {
                header: HEADER,
                reason: "the value is empty",
            });
        }
        // A webhook rule may sign with another algorithm (twilio-node reads
        // this header since its webhook rules); only HMAC-SHA1 is verified.
        if let Some(settings) = signature_header(headers, SETTINGS_HEADER)? {
            let sha1 = settings.split(|&b| b == b',').any(|entry| {
                entry
                    .trim_ascii()
                    .eq_ignore_ascii_case(b"algorithm=HMAC_SHA1")
            });
            if !sha1 {
                return Err(VerifyError::NoSupportedSignature {
                    header: SETTINGS_HEADER,
                    scheme: "algorithm=HMAC_SHA1",
                });
            }
        }
        let candidate: [u8; TAG_LEN] =
            decode_base64_array(value).ok_or(VerifyError::MalformedHeader {
                header: HEADER,
                reason: "expected the 28 characters of a padded base64 HMAC-SHA1",
            })?;
        let target = headers
            .request_target()
            .ok_or(VerifyError::MissingRequestTarget)?;
        let url = self.base.form(target, headers)?;
        let body_digest = match body_sha256(url.query()) {
            Err(()) => {
                return Err(VerifyError::MalformedRequestTarget {
                    reason: "the `bodySHA256` query parameter is repeated",
                })
            }
            Ok(None) => None,
            Ok(Some(hex)) => Some(decode_lower_hex(hex.as_bytes()).ok_or(
                VerifyError::MalformedRequestTarget {
                    reason: "the `bodySHA256` query parameter is not 64 lowercase hex digits",
                },
            )?),
        };
        let params = match body_digest {
            Some(_) => Params::none(),
            None => Params::parse(body),
        };
        let index = self
            .matching(&url, &params, &candidate)
            .ok_or_else(|| mismatch(&self.secrets))?;
        if let Some(expected) = body_digest {
            let actual: [u8; 32] = Sha256::digest(body).into();
            if !bool::from(actual.ct_eq(&expected)) {
                return Err(VerifyError::BodyDigestMismatch);
            }
        }
        Ok(Verified::new(None, index))
    }

    fn identify(&self, body: &[u8], headers: &Headers) -> Result<Identity, IdentifyError> {
        identify::identify(body, headers, self.ids == IdSource::TokenFirst)
    }
}
