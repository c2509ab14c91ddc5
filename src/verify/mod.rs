//! Deciding on the raw bytes whether a delivery is authentic, and what it is.
//!
//! A [`Verifier`] knows one provider's signature scheme. It checks the MAC over
//! the exact bytes received (never a re-serialised or re-decoded body), compares
//! in constant time, enforces the timestamp tolerance where the provider signs a
//! timestamp, and accepts any secret of its [`SecretSet`] so keys
//! can be rotated without downtime. [`Verifier::identify`] then names the event
//! (dedup id, kind) as cheaply as the provider allows.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use time::OffsetDateTime;

use crate::headers::{as_text, Found, HeaderError, Headers};
use crate::secret::SecretSet;

/// Defines the builder of a verifier whose only setting is its secret set, with
/// `Verifier::builder`, `Verifier::secrets`, `Builder::secret` and `Builder::build`
/// (which refuses empty secrets).
macro_rules! secrets_only_builder {
    ($verifier:ident, $builder:ident, $what:literal) => {
        #[doc = concat!("Settings of a [`", stringify!($verifier), "`] verifier.")]
        #[derive(Debug, Clone)]
        #[must_use = "call `.build()` to get the verifier"]
        pub struct $builder {
            secrets: SecretSet,
        }

        impl $verifier {
            #[doc = concat!("Starts a builder accepting the given secret (", $what, "), or set of secrets.")]
            pub fn builder(secrets: impl Into<SecretSet>) -> $builder {
                $builder {
                    secrets: secrets.into(),
                }
            }

            /// The secrets this verifier accepts.
            pub fn secrets(&self) -> &SecretSet {
                &self.secrets
            }
        }

        impl $builder {
            /// Also accepts this secret (keep the old one while you rotate secrets).
            pub fn secret(mut self, secret: impl Into<Secret>) -> Self {
                self.secrets.push(secret.into());
                self
            }

            /// Builds the verifier.
            ///
            /// # Errors
            /// [`ConfigError::EmptySecret`] when a secret of the set is empty.
            pub fn build(self) -> Result<$verifier, ConfigError> {
                check_secrets(&self.secrets)?;
                Ok($verifier {
                    secrets: self.secrets,
                })
            }
        }
    };
}

mod encoding;
mod envelope;
mod error;
mod github;
mod hmac;
mod json;
#[cfg(feature = "paypal")]
mod paypal;
mod profile;
mod shopify;
mod slack;
mod standard_webhooks;
mod stripe;
mod twilio;

pub use error::{CertificateProblem, ConfigError, IdentifyError, SourceError, VerifyError};
pub use github::{GitHub, GitHubBuilder};
pub use hmac::{Hmac, HmacBuilder, HmacConfigError, KindSource, SignatureEncoding, TemplateError};
#[cfg(feature = "paypal")]
pub(crate) use paypal::testing as paypal_testing;
#[cfg(feature = "paypal")]
pub use paypal::{
    CertificateSource, PayPal, PayPalBuilder, TrustAnchors, PAYPAL_CERTIFICATE_HOSTS,
};
pub use profile::ProviderProfile;
pub use shopify::{Shopify, ShopifyBuilder};
pub use slack::{Slack, SlackBuilder};
pub use standard_webhooks::{StandardWebhooks, StandardWebhooksBuilder};
pub use stripe::{Stripe, StripeBuilder};
pub use twilio::{Twilio, TwilioBuilder};

pub(crate) use encoding::{encode_base64, encode_lower_hex};
pub(crate) use standard_webhooks::decode_secret as decode_standard_webhooks_secret;

/// One provider's signature scheme.
///
/// The trait is object-safe: a pipeline holds `Box<dyn Verifier>` and detects the
/// provider of a delivery with [`Verifier::detect`].
pub trait Verifier: Send + Sync + fmt::Debug {
    /// Short lowercase provider name (`"stripe"`, `"github"`, `"shopify"`), used in
    /// idempotency keys and outcomes.
    fn provider(&self) -> &str;

    /// Whether these headers look like a delivery from this provider (its
    /// signature header is present). Detection proves nothing; [`Verifier::verify`] does.
    fn detect(&self, headers: &Headers) -> bool;

    /// Checks the delivery's signature over the raw `body` at time `now`.
    fn verify(
        &self,
        body: &[u8],
        headers: &Headers,
        now: OffsetDateTime,
    ) -> Result<Verified, VerifyError>;

    /// Names a verified delivery: dedup id, kind and metadata. Called only after
    /// [`Verifier::verify`] succeeded on the same body and headers.
    fn identify(&self, body: &[u8], headers: &Headers) -> Result<Identity, IdentifyError>;

    /// The answer to a verified delivery that is the provider's check of the
    /// endpoint rather than an event (Slack's `url_verification`, which must
    /// be answered with its `challenge`): the pipeline answers it 200 at once
    /// with this body ([`OutcomeKind::Handshake`](crate::OutcomeKind::Handshake)):
    /// nothing is identified, claimed or run. Called only after
    /// [`Verifier::verify`] succeeded on the same body and headers. Defaults
    /// to `None`: every verified delivery is an event.
    fn handshake(&self, body: &[u8], headers: &Headers) -> Option<Handshake> {
        let _ = (body, headers);
        None
    }

    /// What this provider does around its signatures (body size, answer time,
    /// retry window, event naming), from which the pipeline derives its
    /// defaults. Defaults to [`ProviderProfile::default`].
    fn profile(&self) -> ProviderProfile {
        ProviderProfile::default()
    }

    /// Asynchronous work [`Verifier::verify`] needs done first, for these
    /// headers at time `now` (PayPal: fetching and checking the signing
    /// certificate the delivery names, unless it is cached). The pipeline
    /// awaits it within the provider's answer budget before calling `verify`;
    /// an error it returns is the delivery's verification failure (its
    /// [`VerifyError::status`] tells 401 from a transient 503), and running
    /// out of budget is [`VerifyError::PreparationTimedOut`] (503).
    ///
    /// `None` means there is nothing to wait for. It is the default, and it
    /// costs verifiers without such work nothing (no allocation, no future).
    /// A verifier that has nothing to wait for on a given delivery (the
    /// certificate is cached, or the headers are unusable, which `verify`
    /// then reports) returns `None` too.
    fn prepare<'a>(
        &'a self,
        headers: &'a Headers,
        now: OffsetDateTime,
    ) -> Option<PrepareFuture<'a>> {
        let _ = (headers, now);
        None
    }
}

/// The future of [`Verifier::prepare`].
pub type PrepareFuture<'a> = Pin<Box<dyn Future<Output = Result<(), VerifyError>> + Send + 'a>>;

/// `Box<V>` and `Arc<V>` (also of `dyn Verifier`) are verifiers too: every
/// method forwards, so none is left at its default.
macro_rules! forward_verifier {
    ($($pointer:ident),*) => {$(
        impl<V: Verifier + ?Sized> Verifier for $pointer<V> {
            fn provider(&self) -> &str {
                (**self).provider()
            }
            fn detect(&self, headers: &Headers) -> bool {
                (**self).detect(headers)
            }
            fn verify(
                &self,
                body: &[u8],
                headers: &Headers,
                now: OffsetDateTime,
            ) -> Result<Verified, VerifyError> {
                (**self).verify(body, headers, now)
            }
            fn identify(&self, body: &[u8], headers: &Headers) -> Result<Identity, IdentifyError> {
                (**self).identify(body, headers)
            }
            fn handshake(&self, body: &[u8], headers: &Headers) -> Option<Handshake> {
                (**self).handshake(body, headers)
            }
            fn profile(&self) -> ProviderProfile {
                (**self).profile()
            }
            fn prepare<'a>(
                &'a self,
                headers: &'a Headers,
                now: OffsetDateTime,
            ) -> Option<PrepareFuture<'a>> {
                (**self).prepare(headers, now)
            }
        }
    )*};
}

forward_verifier!(Box, Arc);

// `Verifier` stays dyn-compatible: the pipeline holds `Box<dyn Verifier>`.
const _: Option<&dyn Verifier> = None;

/// The answer to a provider's check of the endpoint
/// ([`Verifier::handshake`]): a body and its content type, sent with 200.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Handshake {
    /// The response body (Slack: the `challenge` value).
    pub body: bytes::Bytes,
    /// Its `Content-Type`.
    pub content_type: &'static str,
}

impl Handshake {
    /// A `text/plain` answer.
    pub fn text(body: impl Into<bytes::Bytes>) -> Self {
        Self {
            body: body.into(),
            content_type: "text/plain; charset=utf-8",
        }
    }

    /// A JSON answer (`application/json`); `body` must be the JSON text.
    pub fn json(body: impl Into<bytes::Bytes>) -> Self {
        Self {
            body: body.into(),
            content_type: "application/json",
        }
    }
}

impl fmt::Debug for Handshake {
    /// The size and type only: a challenge is not for logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handshake")
            .field("body_len", &self.body.len())
            .field("content_type", &self.content_type)
            .finish()
    }
}

/// What a successful verification proved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Verified {
    /// The signed timestamp, for providers that sign one (Stripe); `None` otherwise.
    pub signed_at: Option<OffsetDateTime>,
    /// Index in the verifier's secret set of the secret that matched (useful to see
    /// when an old secret stops being used during a rotation).
    pub secret_index: usize,
}

impl Verified {
    /// A verification result.
    pub fn new(signed_at: Option<OffsetDateTime>, secret_index: usize) -> Self {
        Self {
            signed_at,
            secret_index,
        }
    }
}

/// The identity of a verified delivery.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Identity {
    /// Deduplication id, stable across the provider's retries of the same delivery.
    pub id: String,
    /// Event kind used for routing (`checkout.session.completed`, `issues.opened`,
    /// `orders/create`).
    pub kind: String,
    /// When the provider says the event happened, where it says so.
    pub occurred_at: Option<OffsetDateTime>,
    /// Further provider facts (e.g. Shopify's shared `event_id`, the shop domain),
    /// as `(name, value)` pairs. Not part of the idempotency key; the replay guard
    /// adds the entries its profile names
    /// ([`ProviderProfile::identity_metadata`]) to the claim's fingerprint.
    pub metadata: Vec<(&'static str, String)>,
}

impl Identity {
    /// An identity with no timestamp and no metadata.
    pub fn new(id: impl Into<String>, kind: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            kind: kind.into(),
            occurred_at: None,
            metadata: Vec::new(),
        }
    }

    /// Sets when the event happened.
    #[must_use]
    pub fn occurred_at(mut self, at: Option<OffsetDateTime>) -> Self {
        self.occurred_at = at;
        self
    }

    /// Adds a metadata entry.
    #[must_use]
    pub fn with_metadata(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.metadata.push((name, value.into()));
        self
    }

    /// The first metadata value of that name.
    pub fn metadata(&self, name: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("occurred_at", &self.occurred_at)
            .field("metadata", &self.metadata)
            .finish()
    }
}

/// Maps a [`HeaderError`] on a signature header to the matching [`VerifyError`].
impl From<HeaderError> for VerifyError {
    fn from(err: HeaderError) -> Self {
        match err {
            HeaderError::Repeated(name) => VerifyError::RepeatedHeader(name.as_str()),
            HeaderError::NotText(name) => VerifyError::MalformedHeader {
                header: name.as_str(),
                reason: "the value is not printable text",
            },
        }
    }
}

/// Refuses a secret set holding an empty secret.
pub(crate) fn check_secrets(secrets: &SecretSet) -> Result<(), ConfigError> {
    match secrets.iter().position(|s| s.is_empty()) {
        Some(index) => Err(ConfigError::EmptySecret { index }),
        None => Ok(()),
    }
}

/// The single raw value of a signature header; a repeated header is an error.
pub(crate) fn signature_header<'h>(
    headers: &'h Headers,
    name: &'static str,
) -> Result<Option<&'h [u8]>, VerifyError> {
    Ok(headers.get_bytes(name)?)
}

/// Checks a body-only signature (GitHub, Shopify): which secret's MAC over `body`
/// equals `candidate`, compared in constant time.
pub(crate) fn verify_body_tag(
    secrets: &SecretSet,
    body: &[u8],
    candidate: [u8; crate::secret::TAG_LEN],
) -> Result<Verified, VerifyError> {
    let index = secrets
        .matching(&[body], &[candidate])
        .ok_or_else(|| mismatch(secrets))?;
    Ok(Verified::new(None, index))
}

/// The mismatch error, with the whitespace hint when a secret suggests it.
pub(crate) fn mismatch(secrets: &SecretSet) -> VerifyError {
    VerifyError::SignatureMismatch {
        secret_has_whitespace: secrets.any_surrounding_whitespace(),
    }
}

/// A header an identity needs: present once, non-empty, printable text.
pub(crate) fn required_header<'h>(
    headers: &'h Headers,
    name: &'static str,
) -> Result<&'h str, IdentifyError> {
    required_text(headers.get(name), name)
}

/// [`required_header`] of what a pass over the headers found of `name`.
pub(crate) fn required<'h>(found: Found<'h>, name: &'static str) -> Result<&'h str, IdentifyError> {
    required_text(found.text(name), name)
}

/// A required header's text, from its lookup.
fn required_text<'h>(
    value: Result<Option<&'h str>, HeaderError>,
    name: &'static str,
) -> Result<&'h str, IdentifyError> {
    match value {
        Ok(Some(value)) if !value.is_empty() => Ok(value),
        Ok(_) => Err(IdentifyError::MissingHeader(name)),
        Err(HeaderError::Repeated(_)) => Err(IdentifyError::MalformedHeader {
            header: name,
            reason: "it was sent more than once",
        }),
        Err(_) => Err(IdentifyError::MalformedHeader {
            header: name,
            reason: "the value is not printable text",
        }),
    }
}

/// An informational header: its value when sent exactly once as non-empty printable
/// text, otherwise nothing (metadata never makes a delivery fail).
pub(crate) fn optional_header<'h>(headers: &'h Headers, name: &'static str) -> Option<&'h str> {
    let mut values = headers.get_all(name);
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    as_text(first).filter(|v| !v.is_empty())
}

/// [`optional_header`] of what a pass over the headers found of one name.
pub(crate) fn optional(found: Found<'_>) -> Option<&str> {
    if found.repeated {
        return None;
    }
    as_text(found.first?).filter(|v| !v.is_empty())
}
