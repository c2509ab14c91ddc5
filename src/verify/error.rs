//! Why a delivery was rejected before any handler ran.

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
}

impl VerifyError {
    /// The HTTP status a delivery rejected for this reason gets: 400 when the
    /// request is not a well-formed signed delivery, 401 when it is one but the
    /// signature or its timestamp does not hold.
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
            | VerifyError::BodyDigestMismatch => 401,
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
}

impl IdentifyError {
    /// Always 400: the delivery was authentic but its payload is unusable.
    pub fn status(&self) -> u16 {
        400
    }
}
