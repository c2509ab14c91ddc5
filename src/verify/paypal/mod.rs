//! PayPal: RSA-SHA256 `paypal-transmission-sig` over
//! `{transmission_id}|{transmission_time}|{webhook_id}|{crc32(body)}`, checked
//! with the certificate `paypal-cert-url` names once it is fetched (through
//! your [`CertificateSource`]), chained to your [`TrustAnchors`], and found to
//! name PayPal and to be valid now.

mod cache;
mod certificate;
mod flight;
mod signature;
mod source;
pub(crate) mod testing;
mod url;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::headers::Headers;
use crate::verify::{
    json, signature_header, ConfigError, IdentifyError, Identity, PrepareFuture, ProviderProfile,
    SourceError, Verified, Verifier, VerifyError,
};

pub use certificate::TrustAnchors;
pub use source::CertificateSource;
pub use url::PAYPAL_CERTIFICATE_HOSTS;

use cache::CertificateCache;
use flight::Flights;
use signature::{Crc32Text, Signature};

const TRANSMISSION_ID: &str = "paypal-transmission-id";
const TRANSMISSION_TIME: &str = "paypal-transmission-time";
const TRANSMISSION_SIG: &str = "paypal-transmission-sig";
const CERT_URL: &str = "paypal-cert-url";
const AUTH_ALGO: &str = "paypal-auth-algo";

/// The only `paypal-auth-algo` accepted.
const SHA256_WITH_RSA: &str = "SHA256withRSA";

/// Certificates kept by default.
const DEFAULT_CACHE_CAPACITY: usize = 16;

/// Verifies PayPal webhook deliveries.
///
/// Build it with the id of the webhook in PayPal's dashboard (several, to
/// rotate), your [`CertificateSource`] and the [`TrustAnchors`] PayPal's
/// certificates chain to. Each delivery names its signing certificate in
/// `paypal-cert-url`: the pipeline fetches it once per URL through
/// [`Verifier::prepare`] (the source failing answers 503, so PayPal retries),
/// checks it and keeps it until it expires; [`Verifier::verify`] then checks
/// the signature synchronously.
///
/// PayPal's signature binds the body only through its CRC-32, which anyone
/// can match with another body: a captured transmission verifies with a
/// forged body of the same CRC-32. Set a [`PayPalBuilder::tolerance`] to
/// bound how long a capture is usable, and read the resource from PayPal's
/// API before acting on amounts.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use hookgate::testing::{PayPalTestPki, StaticCertificates};
/// use hookgate::verify::{PayPal, TrustAnchors};
/// use hookgate::{Headers, Verifier};
///
/// let pki = PayPalTestPki::shared(); // a local CA; in production, DigiCert's roots
/// let url = "https://api.paypal.com/v1/notifications/certs/CERT-test";
/// let source = StaticCertificates::new([(url, pki.chain_pem())]);
/// let paypal = PayPal::builder("WEBHOOK-ID", source)
///     .trust_anchors(TrustAnchors::from_pem(pki.root_pem())?)
///     .build()?;
///
/// let body = br#"{"id":"WH-1","event_type":"PAYMENT.CAPTURE.COMPLETED"}"#;
/// let now = time::OffsetDateTime::now_utc();
/// let headers = Headers::from_pairs(pki.headers(url, "WEBHOOK-ID", body, now));
/// if let Some(fetch) = paypal.prepare(&headers, now) {
///     fetch.await?;
/// }
/// assert!(paypal.verify(body, &headers, now).is_ok());
/// assert_eq!(paypal.identify(body, &headers)?.id, "WH-1");
/// # Ok(()) }
/// ```
pub struct PayPal {
    webhook_ids: Arc<[Box<str>]>,
    source: Arc<dyn CertificateSource>,
    anchors: TrustAnchors,
    cache: CertificateCache,
    flights: Flights,
    tolerance: Option<Duration>,
}

/// Settings of a [`PayPal`] verifier.
#[must_use = "call `.build()` to get the verifier"]
pub struct PayPalBuilder {
    webhook_ids: Vec<String>,
    source: Arc<dyn CertificateSource>,
    anchors: Option<TrustAnchors>,
    cache_capacity: usize,
    tolerance: Option<Duration>,
}

impl PayPal {
    /// Starts a builder for the webhook with id `webhook_id` (the id PayPal's
    /// dashboard shows for the webhook, part of every signed message),
    /// fetching certificates through `source`.
    pub fn builder(
        webhook_id: impl Into<String>,
        source: impl CertificateSource + 'static,
    ) -> PayPalBuilder {
        PayPalBuilder {
            webhook_ids: vec![webhook_id.into()],
            source: Arc::new(source),
            anchors: None,
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            tolerance: None,
        }
    }

    /// The webhook ids this verifier accepts, in the order given.
    pub fn webhook_ids(&self) -> impl Iterator<Item = &str> {
        self.webhook_ids.iter().map(|id| &**id)
    }

    /// How many checked certificates the cache holds now.
    pub fn cached_certificates(&self) -> usize {
        self.cache.len()
    }

    /// Fetches, checks and caches the certificate at `url` (which must pass
    /// the URL rule) at time `now`, once for all the deliveries that ask for
    /// it meanwhile.
    async fn load(&self, url: &str, now: OffsetDateTime) -> Result<(), VerifyError> {
        self.flights
            .run(url, async {
                // A flight that landed just before this one started.
                if self.cache.holds_valid(url, now) {
                    return Ok(());
                }
                self.fetch(url, now).await
            })
            .await
    }

    /// Fetches, checks and caches the certificate at `url`.
    async fn fetch(&self, url: &str, now: OffsetDateTime) -> Result<(), VerifyError> {
        let document = self
            .source
            .fetch(url)
            .await
            .map_err(|err| VerifyError::CertificateUnavailable(SourceError::new(err)))?;
        let cert = certificate::validate(&document, &self.anchors, now)
            .map_err(VerifyError::CertificateUntrusted)?;
        self.cache.insert(url, cert, now);
        Ok(())
    }

    /// The five headers, each present once as text.
    fn read_headers<'h>(&self, headers: &'h Headers) -> Result<Transmission<'h>, VerifyError> {
        let get = |name: &'static str| -> Result<&'h str, VerifyError> {
            match headers.get(name)? {
                Some(value) if !value.is_empty() => Ok(value),
                _ => Err(VerifyError::MissingHeader(name)),
            }
        };
        Ok(Transmission {
            id: get(TRANSMISSION_ID)?,
            time: get(TRANSMISSION_TIME)?,
            signature: signature_header(headers, TRANSMISSION_SIG)?
                .filter(|v| !v.is_empty())
                .ok_or(VerifyError::MissingHeader(TRANSMISSION_SIG))?,
            cert_url: get(CERT_URL)?,
            algorithm: get(AUTH_ALGO)?,
        })
    }
}

/// The signature headers of one delivery.
struct Transmission<'h> {
    id: &'h str,
    time: &'h str,
    signature: &'h [u8],
    cert_url: &'h str,
    algorithm: &'h str,
}

impl PayPalBuilder {
    /// Also accepts this webhook id (keep the old one while you move
    /// deliveries to a new webhook).
    pub fn webhook_id(mut self, webhook_id: impl Into<String>) -> Self {
        self.webhook_ids.push(webhook_id.into());
        self
    }

    /// The certificates PayPal's signing certificates must chain to
    /// (required; calls add up). See the README for the DigiCert roots.
    pub fn trust_anchors(mut self, anchors: TrustAnchors) -> Self {
        match &mut self.anchors {
            Some(held) => held.extend(anchors),
            None => self.anchors = Some(anchors),
        }
        self
    }

    /// How many checked certificates to keep (each until it expires).
    /// Defaults to 16: PayPal signs with one certificate at a time.
    pub fn cache_capacity(mut self, capacity: usize) -> Self {
        self.cache_capacity = capacity.max(1);
        self
    }

    /// Refuses deliveries whose `paypal-transmission-time` is further than
    /// `tolerance` from the clock, on either side. Defaults to no check, as
    /// PayPal's SDKs do; a window limits how long a captured delivery can be
    /// replayed: the signature binds the body only through its CRC-32, which
    /// anyone can match with another body (see the README).
    pub fn tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = Some(tolerance);
        self
    }

    /// Builds the verifier.
    ///
    /// # Errors
    /// [`ConfigError::InvalidKey`] when a webhook id is empty or has
    /// surrounding whitespace; [`ConfigError::InvalidTrustAnchor`] when no
    /// trust anchor was given.
    pub fn build(self) -> Result<PayPal, ConfigError> {
        for (index, id) in self.webhook_ids.iter().enumerate() {
            if id.is_empty() {
                return Err(ConfigError::InvalidKey {
                    index,
                    reason: "the webhook id is empty: is the environment variable holding it set?",
                });
            }
            if id.trim() != id {
                return Err(ConfigError::InvalidKey {
                    index,
                    reason: "the webhook id has surrounding whitespace",
                });
            }
        }
        let anchors = self.anchors.filter(|anchors| !anchors.is_empty()).ok_or(
            ConfigError::InvalidTrustAnchor {
                reason: "no trust anchor was given: add PayPal's roots with `trust_anchors`",
            },
        )?;
        Ok(PayPal {
            webhook_ids: self
                .webhook_ids
                .into_iter()
                .map(String::into_boxed_str)
                .collect(),
            source: self.source,
            anchors,
            cache: CertificateCache::new(self.cache_capacity),
            flights: Flights::default(),
            tolerance: self.tolerance,
        })
    }
}

impl Verifier for PayPal {
    fn provider(&self) -> &str {
        "paypal"
    }

    fn detect(&self, headers: &Headers) -> bool {
        headers.contains(TRANSMISSION_SIG)
    }

    fn prepare<'a>(
        &'a self,
        headers: &'a Headers,
        now: OffsetDateTime,
    ) -> Option<PrepareFuture<'a>> {
        // Unusable headers are `verify`'s to report; nothing is fetched for them.
        let transmission = self.read_headers(headers).ok()?;
        let url = transmission.cert_url;
        if transmission.algorithm != SHA256_WITH_RSA
            || url::check(url).is_err()
            || self.cache.holds_valid(url, now)
        {
            return None;
        }
        Some(Box::pin(self.load(url, now)))
    }

    fn verify(
        &self,
        body: &[u8],
        headers: &Headers,
        now: OffsetDateTime,
    ) -> Result<Verified, VerifyError> {
        let transmission = self.read_headers(headers)?;
        if transmission.algorithm != SHA256_WITH_RSA {
            return Err(VerifyError::NoSupportedSignature {
                header: AUTH_ALGO,
                scheme: SHA256_WITH_RSA,
            });
        }
        url::check(transmission.cert_url)
            .map_err(|reason| VerifyError::CertificateUrlRefused { reason })?;
        let signature =
            Signature::decode(transmission.signature).ok_or(VerifyError::MalformedHeader {
                header: TRANSMISSION_SIG,
                reason: "not padded standard base64 of at most 512 bytes",
            })?;
        let signed_at = OffsetDateTime::parse(transmission.time, &Rfc3339).ok();
        if let Some(tolerance) = self.tolerance {
            let Some(at) = signed_at else {
                return Err(VerifyError::MalformedHeader {
                    header: TRANSMISSION_TIME,
                    reason: "not an RFC 3339 time, so the tolerance cannot be checked",
                });
            };
            let skew = (now - at).whole_seconds();
            if skew.unsigned_abs() > tolerance.as_secs() {
                return Err(VerifyError::TimestampOutsideTolerance {
                    skew_seconds: skew,
                    tolerance_seconds: tolerance.as_secs(),
                });
            }
        }
        let cert = self
            .cache
            .get(transmission.cert_url)
            .ok_or(VerifyError::CertificateNotFetched)?;
        cert.check_dates(now)
            .map_err(VerifyError::CertificateUntrusted)?;
        let crc = Crc32Text::of(body);
        for (index, webhook_id) in self.webhook_ids.iter().enumerate() {
            let digest = signature::message_digest(
                transmission.id.as_bytes(),
                transmission.time.as_bytes(),
                webhook_id.as_bytes(),
                &crc,
            );
            if signature::holds(&cert.key, &digest, &signature) {
                return Ok(Verified::new(signed_at, index));
            }
        }
        Err(VerifyError::SignatureMismatch {
            secret_has_whitespace: false,
        })
    }

    fn identify(&self, body: &[u8], headers: &Headers) -> Result<Identity, IdentifyError> {
        let (mut id, mut kind, mut created) = (None, None, None);
        json::check_members(body, |key, value| {
            // Escaped keys are rare: serde_json decodes them, as `Event::json` would.
            let decoded;
            let name: &[u8] = if key.contains(&b'\\') {
                decoded = serde_json::from_slice::<String>(key).unwrap_or_default();
                decoded.as_bytes()
            } else {
                key.get(1..key.len().saturating_sub(1)).unwrap_or_default()
            };
            match name {
                b"id" => id = Some(value),
                b"event_type" => kind = Some(value),
                b"create_time" => created = Some(value),
                _ => {}
            }
        })
        .map_err(|e| IdentifyError::InvalidJson(e.to_string()))?;
        let string_at = |span: Option<std::ops::Range<usize>>| {
            span.and_then(|span| body.get(span))
                .filter(|text| text.first() == Some(&b'"'))
                .and_then(|text| serde_json::from_slice::<String>(text).ok())
                .filter(|s| !s.is_empty())
        };
        let id = string_at(id).ok_or(IdentifyError::MissingField("id"))?;
        let kind = string_at(kind).ok_or(IdentifyError::MissingField("event_type"))?;
        let occurred_at = string_at(created).and_then(|t| OffsetDateTime::parse(&t, &Rfc3339).ok());
        let mut identity = Identity::new(id, kind).occurred_at(occurred_at);
        if let Ok(Some(transmission)) = headers.get(TRANSMISSION_ID) {
            identity = identity.with_metadata("transmission_id", transmission);
        }
        Ok(identity)
    }

    fn profile(&self) -> ProviderProfile {
        ProviderProfile {
            // The signature covers the body only through CRC-32, which anyone
            // can match: the id and kind are not bound to it (see the README).
            signs_identity: false,
            journal_headers: &[
                "content-type",
                "user-agent",
                "paypal-transmission-id",
                "paypal-transmission-time",
                "paypal-cert-url",
            ],
            delivery_id_headers: &["paypal-transmission-id"],
            ..ProviderProfile::default()
        }
    }
}

impl fmt::Debug for PayPal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PayPal")
            .field("webhook_ids", &self.webhook_ids.len())
            .field("source", &self.source)
            .field("anchors", &self.anchors)
            .field("cached_certificates", &self.cache.len())
            .field("tolerance", &self.tolerance)
            .finish()
    }
}

impl fmt::Debug for PayPalBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PayPalBuilder")
            .field("webhook_ids", &self.webhook_ids.len())
            .field("source", &self.source)
            .field("anchors", &self.anchors)
            .field("cache_capacity", &self.cache_capacity)
            .field("tolerance", &self.tolerance)
            .finish()
    }
}
