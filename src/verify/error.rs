//! Why a delivery was rejected before any handler ran.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

/// Why a delivery failed verification. Every reason is its own variant; none of
/// them carries a secret or the expected signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// No configured verifier recognised the delivery's headers.
    #[error(
        "no configured provider recognised this delivery: no known signature header is present"
    )]
    UnknownProvider,
    /// A required header is absent.
    #[error("missing header `{0}`: is the request really from this provider, and does your HTTP layer pass every header through?")]
    MissingHeader(&'static str),
    /// A header that must appear once was sent several times.
    #[error("header `{0}` was sent more than once")]
    RepeatedHeader(&'static str),
    /// A header is present but cannot be parsed.
    #[error("header `{header}` is malformed: {reason}")]
    MalformedHeader {
        /// The header's name.
        header: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The signature header holds no signature of a scheme this verifier supports
    /// (e.g. a Stripe header with only `v0=` entries).
    #[error("header `{header}` holds no signature with the expected scheme `{scheme}`")]
    NoSupportedSignature {
        /// The header's name.
        header: &'static str,
        /// The scheme looked for.
        scheme: &'static str,
    },
    /// No signature matched the body with any configured secret.
    #[error("no signature matches the payload: are you passing the raw request body exactly as received, and the signing secret of this endpoint?{}", if *.secret_has_whitespace { " (a configured secret has surrounding whitespace)" } else { "" })]
    SignatureMismatch {
        /// A configured secret starts or ends with whitespace, a likely cause.
        secret_has_whitespace: bool,
    },
    /// The body is empty where the provider's SDK refuses an empty payload
    /// (GitHub, Shopify); providers never sign an empty delivery.
    #[error("the request body is empty: the provider never sends an empty delivery; is your HTTP layer consuming the body before hookgate sees it?")]
    EmptyBody,
    /// The signed timestamp is too far from the clock.
    #[error("timestamp outside the tolerance window: signed {} s {} now (tolerance {tolerance_seconds} s); check the server clock or whether this is a replay", .skew_seconds.unsigned_abs(), if *.skew_seconds >= 0 { "before" } else { "after" })]
    TimestampOutsideTolerance {
        /// `now - signed timestamp` in seconds: positive when the signature is old,
        /// negative when it claims to come from the future.
        skew_seconds: i64,
        /// The tolerance that was exceeded, in seconds.
        tolerance_seconds: u64,
    },
    /// The verifier signs over the request URL (Twilio) but the request
    /// target was not handed over with the headers.
    #[error("the request target (path and query) is missing: this provider signs the URL, so build the headers with `Headers::with_request` (the `http` and `axum` integrations do)")]
    MissingRequestTarget,
    /// The request target cannot be part of a signed URL.
    #[error("the request target is malformed: {reason}")]
    MalformedRequestTarget {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The signature holds, but the body's SHA-256 differs from the signed
    /// `bodySHA256` query parameter (Twilio's JSON deliveries).
    #[error("the body does not match the signed `bodySHA256` digest: are you passing the raw request body exactly as received?")]
    BodyDigestMismatch,
    /// The URL the delivery names for its signing certificate (PayPal's
    /// `paypal-cert-url`) is not one the verifier fetches from: not `https`,
    /// not one of the provider's hosts, or written with a userinfo, a port, a
    /// query, an unexpected path. Nothing was fetched.
    #[error("the certificate URL is refused: {reason}; only the provider's own certificate URLs are fetched")]
    CertificateUrlRefused {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The signing certificate the delivery names cannot be trusted: it does
    /// not chain to a configured trust anchor, does not name the provider, is
    /// outside its validity dates, or cannot be read.
    #[error("the signing certificate is not trusted: {0}")]
    CertificateUntrusted(CertificateProblem),
    /// The [`CertificateSource`](crate::verify::CertificateSource) failed to
    /// fetch the signing certificate: a transient failure, answered 503 so
    /// the provider retries.
    #[error("the signing certificate could not be fetched: {0}; the provider will retry")]
    CertificateUnavailable(SourceError),
    /// The verifier's preparation (fetching the signing certificate) did not
    /// finish within the provider's answer budget: answered 503 so the
    /// provider retries.
    #[error("fetching the signing certificate did not finish within the {budget:?} answer budget; the provider will retry")]
    PreparationTimedOut {
        /// The provider's answer budget.
        budget: Duration,
    },
    /// The signing certificate is not in the verifier's cache: `verify` was
    /// called without the asynchronous preparation the pipeline runs first
    /// ([`Verifier::prepare`](crate::Verifier::prepare)), or the cache
    /// dropped it in between. Transient: answered 503.
    #[error("the signing certificate has not been fetched: await `Verifier::prepare` before `verify` (the pipeline does)")]
    CertificateNotFetched,
}

/// Why a signing certificate is not trusted
/// ([`VerifyError::CertificateUntrusted`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateProblem {
    /// What the source returned is not PEM certificates DER-decodable as X.509.
    #[error("the certificate source returned no readable PEM certificate")]
    Unreadable,
    /// What the source returned is larger than a certificate chain ever is.
    #[error("the certificate document is larger than {limit} bytes")]
    TooLarge {
        /// The size limit in bytes.
        limit: usize,
    },
    /// The document holds more certificates than a chain needs.
    #[error("the certificate document holds more than {limit} certificates")]
    TooManyCertificates {
        /// The most certificates accepted.
        limit: usize,
    },
    /// No path leads from the signing certificate to a configured trust anchor.
    #[error("it does not chain to a trusted root (is the issuing CA among the configured trust anchors?)")]
    NoTrustedChain,
    /// A certificate on the path signs others without being a CA
    /// (no `basicConstraints` with `cA`).
    #[error("an issuer on the path is not a certificate authority")]
    NotCertificateAuthority,
    /// A certificate on the path is signed with an algorithm other than
    /// RSA PKCS#1 v1.5 with SHA-256, SHA-384 or SHA-512.
    #[error("a certificate on the path uses an unsupported signature algorithm")]
    UnsupportedSignatureAlgorithm,
    /// A certificate on the path has a critical extension this verifier does
    /// not process (RFC 5280 requires refusing it).
    #[error("a certificate on the path has a critical extension that is not understood")]
    UnsupportedCriticalExtension,
    /// A `keyUsage` on the path forbids what the certificate is used for: the
    /// signing certificate's lacks `digitalSignature`, or an issuer's lacks
    /// `keyCertSign`.
    #[error("a certificate's keyUsage does not allow its use on the path")]
    WrongKeyUsage,
    /// An issuer's `pathLenConstraint` allows fewer intermediates below it
    /// than the path has.
    #[error("the path is longer than an issuer's pathLenConstraint allows")]
    PathTooLong,
    /// The signing certificate's key is not an RSA key of 2048 to 4096 bits.
    #[error("the signing key is not an RSA key of 2048 to 4096 bits")]
    UnsupportedKey,
    /// The signing certificate's subject does not name the provider (PayPal:
    /// a CN `messageverificationcerts….paypal.com`).
    #[error("the certificate's subject does not name the provider")]
    WrongSubject,
    /// A certificate on the path expired before now.
    #[error("a certificate on the path expired at {not_after}")]
    Expired {
        /// The earliest `notAfter` on the path.
        not_after: OffsetDateTime,
    },
    /// A certificate on the path is not valid yet.
    #[error("a certificate on the path is valid only from {not_before}")]
    NotYetValid {
        /// The latest `notBefore` on the path.
        not_before: OffsetDateTime,
    },
}

/// The error of a user-supplied source of key material (a
/// [`CertificateSource`](crate::verify::CertificateSource)), kept whole for
/// your logs. Two are equal when they are the same error (clones of one).
#[derive(Clone)]
pub struct SourceError(Arc<dyn std::error::Error + Send + Sync>);

impl SourceError {
    /// Wraps the source's error.
    pub fn new(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self(Arc::from(err.into()))
    }

    /// The source's error.
    pub fn inner(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }
}

impl fmt::Debug for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SourceError").field(&self.0).finish()
    }
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl PartialEq for SourceError {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for SourceError {}

impl VerifyError {
    /// The HTTP status a delivery rejected for this reason gets: 400 when the
    /// request is not a well-formed signed delivery, 401 when it is one but the
    /// signature, its timestamp or its signing certificate does not hold, 503
    /// when the signing certificate could not be had in time (the provider
    /// retries; a source being down proves nothing against the delivery).
    pub fn status(&self) -> u16 {
        match self {
            VerifyError::UnknownProvider
            | VerifyError::MissingHeader(_)
            | VerifyError::RepeatedHeader(_)
            | VerifyError::MalformedHeader { .. }
            | VerifyError::NoSupportedSignature { .. }
            | VerifyError::EmptyBody
            | VerifyError::MissingRequestTarget
            | VerifyError::MalformedRequestTarget { .. } => 400,
            VerifyError::SignatureMismatch { .. }
            | VerifyError::TimestampOutsideTolerance { .. }
            | VerifyError::BodyDigestMismatch
            | VerifyError::CertificateUrlRefused { .. }
            | VerifyError::CertificateUntrusted(_) => 401,
            VerifyError::CertificateUnavailable(_)
            | VerifyError::PreparationTimedOut { .. }
            | VerifyError::CertificateNotFetched => 503,
        }
    }
}

/// Why a verified delivery could not be identified (its payload is unusable).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentifyError {
    /// A header naming the event is absent.
    #[error("missing header `{0}` that identifies the event")]
    MissingHeader(&'static str),
    /// A header naming the event is present but unusable (repeated, empty, not text).
    #[error("header `{header}` cannot identify the event: {reason}")]
    MalformedHeader {
        /// The header's name.
        header: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The body is not a JSON document serde_json accepts (so `Event::json` would
    /// fail on it): malformed, invalid UTF-8 in a string, a lone surrogate escape,
    /// a number out of range, or containers nested deeper than 127 levels.
    #[error("the body is not valid JSON: {0}")]
    InvalidJson(String),
    /// A field the event needs is absent or has the wrong type.
    #[error("the body has no usable `{0}` field")]
    MissingField(&'static str),
    /// The [deduplication key](crate::dedup::DedupKey) set for the provider
    /// found nothing usable; says what was looked for.
    #[error("the deduplication key found no usable {0}")]
    DedupKey(String),
    /// The payload is authentic but of a kind this verifier does not handle (e.g. a
    /// Stripe thin event notification, which stripe-node's `constructEvent` refuses too).
    #[error("unsupported payload: {0}")]
    Unsupported(&'static str),
}

/// Why a verifier could not be built from its settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A secret of the set is empty, which no provider issues: almost certainly an
    /// unset environment variable.
    #[error("secret #{index} of the set is empty: is the environment variable holding it set?")]
    EmptySecret {
        /// Index of the empty secret in the set.
        index: usize,
    },
    /// A key of the set is not in the form the provider issues it (e.g. a
    /// Standard Webhooks `whsec_` secret that is not base64).
    #[error("key #{index} of the set cannot be used: {reason}")]
    InvalidKey {
        /// Index of the key in the set.
        index: usize,
        /// What is wrong with it (never the key itself).
        reason: &'static str,
    },
    /// The public URL a verifier signs over (Twilio's) cannot be used.
    #[error("the public URL cannot be used: {reason}")]
    InvalidPublicUrl {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The trust anchors given to a certificate-checking verifier (PayPal's)
    /// cannot be used.
    #[error("the trust anchors cannot be used: {reason}")]
    InvalidTrustAnchor {
        /// What is wrong with them.
        reason: &'static str,
    },
}

impl IdentifyError {
    /// Always 400: the delivery was authentic but its payload is unusable.
    pub fn status(&self) -> u16 {
        400
    }
}
