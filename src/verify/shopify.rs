//! Shopify: `X-Shopify-Hmac-Sha256: <base64>` over the raw body.
//!
//! Rules follow `@shopify/shopify-api` (`lib/webhooks/validate.ts`,
//! `lib/utils/hmac-validator.ts`, `lib/auth/oauth/safe-compare.ts`): the body must
//! be non-empty, the header must equal the padded standard base64 of the
//! HMAC-SHA256 of the body, and the delivery needs its topic, shop domain, API
//! version and webhook id headers. Deliveries of Shopify's newer event webhooks
//! carry the same headers without the `X-` prefix (`shopify-hmac-sha256`, …); as in
//! the library, those are used whenever `shopify-hmac-sha256` is present.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::encoding::decode_base64_tag;
use super::json;
use super::{check_secrets, optional, required, verify_body_tag};
use super::{
    ConfigError, IdentifyError, Identity, ProviderProfile, Verified, Verifier, VerifyError,
};
use crate::headers::Headers;
use crate::secret::{Secret, SecretSet};

/// The header names of one of Shopify's two delivery families.
#[derive(Debug, Clone, Copy)]
struct Names {
    hmac: &'static str,
    topic: &'static str,
    domain: &'static str,
    api_version: &'static str,
    webhook_id: &'static str,
    event_id: &'static str,
    triggered_at: &'static str,
    /// Whether the library requires the event id header (event webhooks only).
    event_id_required: bool,
}

const WEBHOOKS: Names = Names {
    hmac: "X-Shopify-Hmac-Sha256",
    topic: "X-Shopify-Topic",
    domain: "X-Shopify-Shop-Domain",
    api_version: "X-Shopify-API-Version",
    webhook_id: "X-Shopify-Webhook-Id",
    event_id: "X-Shopify-Event-Id",
    triggered_at: "X-Shopify-Triggered-At",
    event_id_required: false,
};

/// The name of the webhook subscription (optional, up to 50 characters),
/// sent by both families.
const NAME: &str = "X-Shopify-Name";

const EVENTS: Names = Names {
    hmac: "shopify-hmac-sha256",
    topic: "shopify-topic",
    domain: "shopify-shop-domain",
    api_version: "shopify-api-version",
    webhook_id: "shopify-webhook-id",
    event_id: "shopify-event-id",
    triggered_at: "shopify-triggered-at",
    event_id_required: true,
};

/// The header family of a delivery: event webhooks when `shopify-hmac-sha256` is
/// present and non-empty (the library checks that one first), classic webhooks
/// otherwise.
fn names_for(headers: &Headers) -> Names {
    if headers.get_all(EVENTS.hmac).any(|v| !v.is_empty()) {
        EVENTS
    } else {
        WEBHOOKS
    }
}

/// Whether `body` is an XML document (a subscription created with format `XML`)
/// rather than JSON: its first byte after white space or a byte-order mark is
/// `<`, where no JSON document can start. Decided on the signed bytes, not the
/// unsigned `Content-Type`.
fn is_xml(body: &[u8]) -> bool {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    body.iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'<')
}

/// Verifies Shopify webhook deliveries.
///
/// Default behaviour is `@shopify/shopify-api`'s `webhooks.validate`: a non-empty
/// body whose HMAC-SHA256 under one of the secrets, in padded standard base64,
/// equals the `X-Shopify-Hmac-Sha256` header exactly. Shopify signs no timestamp.
/// The dedup id is `X-Shopify-Webhook-Id`; `X-Shopify-Event-Id` is shared by every
/// topic one merchant action triggers, so it is only metadata (`event_id`).
///
/// [`identify`](Verifier::identify) names the event from the headers, and still
/// refuses a JSON body serde_json would refuse with
/// [`IdentifyError::InvalidJson`], so a handler's `Event::json` never meets one. An
/// XML body (a subscription created with format `XML`) is not checked.
///
/// ```
/// use hookgate::{testing, Headers, Shopify, Verifier};
/// use time::OffsetDateTime;
///
/// let shopify = Shopify::builder("shpss_secret").build()?;
/// let body = br#"{"id":820982911946154508}"#;
/// let headers = Headers::from_pairs(testing::shopify_headers(
///     "shpss_secret", body, "orders/create", "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
/// ));
/// shopify.verify(body, &headers, OffsetDateTime::now_utc())?;
/// let identity = shopify.identify(body, &headers)?;
/// assert_eq!(identity.kind, "orders/create");
/// assert_eq!(identity.metadata("shop_domain"), Some(testing::SHOPIFY_TEST_SHOP));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Shopify {
    secrets: SecretSet,
}

secrets_only_builder!(Shopify, ShopifyBuilder, "the app's client secret");

impl Shopify {
    /// The header Shopify signs classic webhooks with (matched case-insensitively).
    pub const SIGNATURE_HEADER: &'static str = WEBHOOKS.hmac;
}

impl Verifier for Shopify {
    fn provider(&self) -> &str {
        "shopify"
    }

    /// Shopify waits 5 s for an answer (1 s to connect) and retries 8 times
    /// over 4 hours; completed events are remembered 72 h. The webhook id,
    /// topic and shop domain headers are not signed (one app secret signs the
    /// deliveries of every shop), so `signs_identity` keeps its default, `false`.
    fn profile(&self) -> ProviderProfile {
        ProviderProfile {
            answer_within: std::time::Duration::from_secs(5),
            identity_metadata: &["shop_domain"],
            journal_headers: &[
                "content-type",
                "user-agent",
                "x-shopify-topic",
                "x-shopify-shop-domain",
                "x-shopify-api-version",
                "x-shopify-webhook-id",
                "x-shopify-event-id",
                "x-shopify-triggered-at",
                "shopify-topic",
                "shopify-shop-domain",
                "shopify-api-version",
                "shopify-webhook-id",
                "shopify-event-id",
                "shopify-triggered-at",
            ],
            delivery_id_headers: &["x-shopify-webhook-id", "shopify-webhook-id"],
            ..ProviderProfile::default()
        }
    }

    fn detect(&self, headers: &Headers) -> bool {
        headers.contains(WEBHOOKS.hmac) || headers.contains(EVENTS.hmac)
    }

    fn verify(
        &self,
        body: &[u8],
        headers: &Headers,
        _now: OffsetDateTime,
    ) -> Result<Verified, VerifyError> {
        // Both families' signature headers in one pass: the family as
        // `names_for` decides it, and its signature header's value.
        let [events, webhooks] = headers.find_each([EVENTS.hmac, WEBHOOKS.hmac]);
        let (names, hmac) = if events.any_non_empty {
            (EVENTS, events)
        } else {
            (WEBHOOKS, webhooks)
        };
        if body.is_empty() {
            return Err(VerifyError::EmptyBody);
        }
        let value = hmac
            .single(names.hmac)?
            .filter(|v| !v.is_empty())
            .ok_or(VerifyError::MissingHeader(names.hmac))?;
        let candidate = decode_base64_tag(value).ok_or(VerifyError::MalformedHeader {
            header: names.hmac,
            reason: "expected the 44-character padded standard base64 of an HMAC-SHA256",
        })?;
        verify_body_tag(&self.secrets, body, candidate)
    }

    fn identify(&self, body: &[u8], headers: &Headers) -> Result<Identity, IdentifyError> {
        let names = names_for(headers);
        // The family's headers in one pass; read in the order each would be
        // looked up on its own, so the first one missing is the one named.
        let [topic, domain, api_version, webhook_id, event_id, triggered_at, shopify_name] =
            headers.find_each([
                names.topic,
                names.domain,
                names.api_version,
                names.webhook_id,
                names.event_id,
                names.triggered_at,
                NAME,
            ]);
        let topic = required(topic, names.topic)?;
        let domain = required(domain, names.domain)?;
        let api_version = required(api_version, names.api_version)?;
        let webhook_id = required(webhook_id, names.webhook_id)?;
        let event_id = if names.event_id_required {
            Some(required(event_id, names.event_id)?)
        } else {
            optional(event_id)
        };
        let triggered_at = optional(triggered_at);
        let mut identity = Identity::new(webhook_id, topic)
            .occurred_at(triggered_at.and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok()))
            .with_metadata("shop_domain", domain)
            .with_metadata("api_version", api_version);
        if let Some(event_id) = event_id {
            identity = identity.with_metadata("event_id", event_id);
        }
        if let Some(triggered_at) = triggered_at {
            identity = identity.with_metadata("triggered_at", triggered_at);
        }
        if let Some(name) = optional(shopify_name) {
            identity = identity.with_metadata("name", name);
        }
        // The identity comes from the headers, but a JSON body serde_json would
        // refuse (as `Event::json` would) is refused too, before anything is
        // claimed or routed. XML subscriptions are left to their handlers.
        if !is_xml(body) {
            json::check(body).map_err(|e| IdentifyError::InvalidJson(e.to_string()))?;
        }
        Ok(identity)
    }
}
