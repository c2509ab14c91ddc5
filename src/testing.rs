//! Sign deliveries like the providers do, to test your own handlers.
//!
//! Each helper returns header `(name, value)` pairs that the matching verifier
//! accepts for exactly that body and secret (the equivalent of stripe-node's
//! `generateTestHeaderString`). Feed them to [`Headers::from_pairs`](crate::Headers::from_pairs)
//! or to your HTTP test client.
//!
//! ```
//! use hookgate::{testing, Headers, Stripe, Verifier};
//! use time::OffsetDateTime;
//!
//! let now = OffsetDateTime::now_utc();
//! let body = br#"{"id":"evt_test","type":"customer.created"}"#;
//! let headers = Headers::from_pairs(testing::stripe_headers("whsec_test", body, now));
//! let stripe = Stripe::builder("whsec_test").build()?;
//! assert!(stripe.verify(body, &headers, now).is_ok());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use time::OffsetDateTime;

use crate::secret::SecretSet;
use crate::verify::{encode_base64, encode_lower_hex};

#[cfg(feature = "paypal")]
pub use crate::verify::paypal_testing::{
    PayPalTestPki, StaticCertificates, PAYPAL_TEST_COMMON_NAME,
};

/// Shop domain [`shopify_headers`] puts in `X-Shopify-Shop-Domain`.
pub const SHOPIFY_TEST_SHOP: &str = "hookgate-test.myshopify.com";

/// API version [`shopify_headers`] puts in `X-Shopify-API-Version`.
pub const SHOPIFY_TEST_API_VERSION: &str = "2025-07";

fn hmac(secret: &[u8], parts: &[&[u8]]) -> [u8; crate::secret::TAG_LEN] {
    let set = SecretSet::new(secret);
    // A fresh one-secret set always has index 0.
    set.tag(0, parts).unwrap_or_default()
}

/// The `Stripe-Signature` value for `body` signed with `secret` at `at` (whole
/// seconds): `t=<unix>,v1=<hex>`.
///
/// ```
/// let value = hookgate::testing::stripe_signature("whsec_test", b"{}", time::OffsetDateTime::UNIX_EPOCH);
/// assert!(value.starts_with("t=0,v1="));
/// assert_eq!(value.len(), "t=0,v1=".len() + 64);
/// ```
pub fn stripe_signature(secret: impl AsRef<[u8]>, body: &[u8], at: OffsetDateTime) -> String {
    let t = at.unix_timestamp().to_string();
    let tag = hmac(secret.as_ref(), &[t.as_bytes(), b".", body]);
    format!("t={t},v1={}", encode_lower_hex(&tag))
}

/// Headers of a Stripe delivery of `body` signed with `secret` at `at`: only
/// `Stripe-Signature` (Stripe's identity is in the body).
///
/// ```
/// use hookgate::testing::stripe_headers;
/// let headers = stripe_headers("whsec_test", b"{}", time::OffsetDateTime::UNIX_EPOCH);
/// assert_eq!(headers[0].0, "Stripe-Signature");
/// ```
pub fn stripe_headers(
    secret: impl AsRef<[u8]>,
    body: &[u8],
    at: OffsetDateTime,
) -> Vec<(String, String)> {
    vec![(
        "Stripe-Signature".to_owned(),
        stripe_signature(secret, body, at),
    )]
}

/// The `X-Hub-Signature-256` value for `body` signed with `secret`: `sha256=<hex>`.
///
/// ```
/// // The example of GitHub's documentation.
/// assert_eq!(
///     hookgate::testing::github_signature("It's a Secret to Everybody", b"Hello, World!"),
///     "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
/// );
/// ```
pub fn github_signature(secret: impl AsRef<[u8]>, body: &[u8]) -> String {
    format!(
        "sha256={}",
        encode_lower_hex(&hmac(secret.as_ref(), &[body]))
    )
}

/// Headers of a GitHub delivery: `X-Hub-Signature-256`, `X-GitHub-Event` and
/// `X-GitHub-Delivery`.
///
/// ```
/// use hookgate::{testing::github_headers, GitHub, Headers, Verifier};
/// let headers = Headers::from_pairs(github_headers("s", b"{}", "ping", "d-1"));
/// let identity = GitHub::builder("s").build()?.identify(b"{}", &headers)?;
/// assert_eq!((identity.id.as_str(), identity.kind.as_str()), ("d-1", "ping"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn github_headers(
    secret: impl AsRef<[u8]>,
    body: &[u8],
    event: &str,
    delivery_id: &str,
) -> Vec<(String, String)> {
    vec![
        (
            "X-Hub-Signature-256".to_owned(),
            github_signature(secret, body),
        ),
        ("X-GitHub-Event".to_owned(), event.to_owned()),
        ("X-GitHub-Delivery".to_owned(), delivery_id.to_owned()),
    ]
}

/// The `X-Shopify-Hmac-Sha256` value for `body` signed with `secret`: padded
/// standard base64.
///
/// ```
/// let value = hookgate::testing::shopify_hmac("shpss_secret", b"{}");
/// assert_eq!(value.len(), 44);
/// assert!(value.ends_with('='));
/// ```
pub fn shopify_hmac(secret: impl AsRef<[u8]>, body: &[u8]) -> String {
    encode_base64(&hmac(secret.as_ref(), &[body]))
}

/// Headers of a Shopify delivery: `X-Shopify-Hmac-Sha256`, `X-Shopify-Topic`,
/// `X-Shopify-Webhook-Id`, plus the shop domain ([`SHOPIFY_TEST_SHOP`]) and API
/// version ([`SHOPIFY_TEST_API_VERSION`]) headers Shopify always sends.
///
/// ```
/// use hookgate::{testing::shopify_headers, Headers, Shopify, Verifier};
/// let headers = Headers::from_pairs(shopify_headers("s", b"{}", "orders/paid", "w-1"));
/// let identity = Shopify::builder("s").build()?.identify(b"{}", &headers)?;
/// assert_eq!((identity.id.as_str(), identity.kind.as_str()), ("w-1", "orders/paid"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn shopify_headers(
    secret: impl AsRef<[u8]>,
    body: &[u8],
    topic: &str,
    webhook_id: &str,
) -> Vec<(String, String)> {
    vec![
        (
            "X-Shopify-Hmac-Sha256".to_owned(),
            shopify_hmac(secret, body),
        ),
        ("X-Shopify-Topic".to_owned(), topic.to_owned()),
        ("X-Shopify-Webhook-Id".to_owned(), webhook_id.to_owned()),
        (
            "X-Shopify-Shop-Domain".to_owned(),
            SHOPIFY_TEST_SHOP.to_owned(),
        ),
        (
            "X-Shopify-API-Version".to_owned(),
            SHOPIFY_TEST_API_VERSION.to_owned(),
        ),
    ]
}

/// The key a Standard Webhooks helper signs with: the decoded `whsec_…` secret,
/// or the text's own bytes when it is not one.
fn standard_webhooks_key(secret: &str) -> zeroize::Zeroizing<Vec<u8>> {
    crate::verify::decode_standard_webhooks_secret(secret.as_bytes())
        .unwrap_or_else(|_| zeroize::Zeroizing::new(secret.as_bytes().to_vec()))
}

/// The `webhook-signature` value for `body` with message id `id`, signed at `at`
/// (whole seconds) with the Standard Webhooks `secret` (`whsec_` + base64, as
/// [`StandardWebhooks::builder`](crate::StandardWebhooks::builder) takes it):
/// `v1,<base64>`. A `secret` that is not such a text signs with its own bytes as
/// the key (what [`StandardWebhooks::builder_raw`](crate::StandardWebhooks::builder_raw)
/// would accept).
///
/// ```
/// // The example of the Standard Webhooks and Svix documentation.
/// let at = time::OffsetDateTime::from_unix_timestamp(1614265330).unwrap();
/// assert_eq!(
///     hookgate::testing::standard_webhooks_signature(
///         "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
///         "msg_p5jXN8AQM9LWM0D4loKWxJek",
///         br#"{"test": 2432232314}"#,
///         at,
///     ),
///     "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
/// );
/// ```
pub fn standard_webhooks_signature(
    secret: &str,
    id: &str,
    body: &[u8],
    at: OffsetDateTime,
) -> String {
    let t = at.unix_timestamp().to_string();
    let tag = hmac(
        &standard_webhooks_key(secret),
        &[id.as_bytes(), b".", t.as_bytes(), b".", body],
    );
    format!("v1,{}", encode_base64(&tag))
}

/// Headers of a Standard Webhooks delivery of `body` with message id `id`, signed
/// at `at` with `secret` (see [`standard_webhooks_signature`]): `webhook-id`,
/// `webhook-timestamp` and `webhook-signature`.
///
/// ```
/// use hookgate::{testing::standard_webhooks_headers, Headers, StandardWebhooks, Verifier};
/// let at = time::OffsetDateTime::now_utc();
/// let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// let headers = Headers::from_pairs(standard_webhooks_headers(secret, "msg_1", b"{}", at));
/// let verifier = StandardWebhooks::builder(secret).build()?;
/// assert!(verifier.verify(b"{}", &headers, at).is_ok());
/// assert_eq!(verifier.identify(b"{}", &headers)?.id, "msg_1");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn standard_webhooks_headers(
    secret: &str,
    id: &str,
    body: &[u8],
    at: OffsetDateTime,
) -> Vec<(String, String)> {
    vec![
        ("webhook-id".to_owned(), id.to_owned()),
        (
            "webhook-timestamp".to_owned(),
            at.unix_timestamp().to_string(),
        ),
        (
            "webhook-signature".to_owned(),
            standard_webhooks_signature(secret, id, body, at),
        ),
    ]
}

/// Whether `url`'s query has a non-empty `bodySHA256` parameter.
fn twilio_signs_body_digest(url: &str) -> bool {
    let query = url.split('#').next().unwrap_or_default();
    let query = query.split_once('?').map_or("", |(_, q)| q);
    form_urlencoded::parse(query.as_bytes())
        .any(|(name, value)| name == "bodySHA256" && !value.is_empty())
}

/// The `X-Twilio-Signature` value of a request to `url` (the full URL Twilio
/// calls, query included) with `body`, signed with `auth_token`: base64
/// HMAC-SHA1 over `url` followed by the body's form parameters (decoded,
/// sorted by name then value, exact repeats once, each name followed by its
/// value). When `url`'s query has a `bodySHA256` parameter (see
/// [`twilio_json_url`]) the signature covers `url` alone.
///
/// ```
/// // The example of Twilio's helper libraries' test suites.
/// let body = b"CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234&From=%2B14158675309&To=%2B18005551212";
/// assert_eq!(
///     hookgate::testing::twilio_signature("12345", "https://mycompany.com/myapp.php?foo=1&bar=2", body),
///     "RSOYDt4T1cUTdK1PDd93/VVr8B8="
/// );
/// ```
pub fn twilio_signature(auth_token: impl AsRef<[u8]>, url: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    use sha1::Sha1;

    let mut params: Vec<(String, String)> = if twilio_signs_body_digest(url) {
        Vec::new()
    } else {
        form_urlencoded::parse(body).into_owned().collect()
    };
    params.sort();
    params.dedup();
    // HMAC takes keys of any length: keying cannot fail.
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(auth_token.as_ref())
        .expect("HMAC-SHA1 accepts keys of any length");
    mac.update(url.as_bytes());
    for (name, value) in &params {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        mac.finalize().into_bytes(),
    )
}

/// `url` with the `bodySHA256` query parameter (the lowercase hex SHA-256 of
/// `body`) appended, as Twilio addresses a JSON delivery.
///
/// ```
/// let url = hookgate::testing::twilio_json_url("https://example.com/hook?a=1", b"{}");
/// assert!(url.starts_with("https://example.com/hook?a=1&bodySHA256=44136fa355b3678a"));
/// ```
pub fn twilio_json_url(url: &str, body: &[u8]) -> String {
    use sha2::Digest;
    let digest = hex::encode(sha2::Sha256::digest(body));
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}bodySHA256={digest}")
}

/// Headers of a Twilio request to `url` with `body` (see
/// [`twilio_signature`]): `X-Twilio-Signature`, `Host` (the URL's host and
/// port) and `Content-Type` (JSON when the URL has `bodySHA256`, else form).
/// Hand the request target over too, with
/// [`Headers::with_request`](crate::Headers::with_request).
///
/// ```
/// use hookgate::{testing::twilio_headers, Headers, Twilio, Verifier};
/// let body = b"AccountSid=AC1&CallSid=CA1&CallStatus=ringing";
/// let headers = Headers::from_pairs(twilio_headers("token", "https://example.com/voice", body))
///     .with_request("POST", "/voice");
/// let twilio = Twilio::builder("token").build()?; // https + the Host header
/// assert!(twilio.verify(body, &headers, time::OffsetDateTime::now_utc()).is_ok());
/// assert_eq!(twilio.identify(body, &headers)?.kind, "call");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn twilio_headers(
    auth_token: impl AsRef<[u8]>,
    url: &str,
    body: &[u8],
) -> Vec<(String, String)> {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = after_scheme
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    let content_type = if twilio_signs_body_digest(url) {
        "application/json"
    } else {
        "application/x-www-form-urlencoded"
    };
    vec![
        (
            "X-Twilio-Signature".to_owned(),
            twilio_signature(auth_token, url, body),
        ),
        ("Host".to_owned(), host.to_owned()),
        ("Content-Type".to_owned(), content_type.to_owned()),
    ]
}

/// The `X-Slack-Signature` value for `body` signed with the app's signing
/// `secret` at `at` (whole seconds): `v0=<hex>` of the HMAC-SHA256 of
/// `v0:{timestamp}:{body}`.
///
/// ```
/// // The example of Slack's "Verifying requests from Slack" guide.
/// let at = time::OffsetDateTime::from_unix_timestamp(1531420618).unwrap();
/// let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
/// assert_eq!(
///     hookgate::testing::slack_signature("8f742231b10e8888abcd99yyyzzz85a5", body, at),
///     "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
/// );
/// ```
pub fn slack_signature(secret: impl AsRef<[u8]>, body: &[u8], at: OffsetDateTime) -> String {
    let t = at.unix_timestamp().to_string();
    let tag = hmac(secret.as_ref(), &[b"v0:", t.as_bytes(), b":", body]);
    format!("v0={}", encode_lower_hex(&tag))
}

/// Headers of a Slack request of `body` signed with `secret` at `at`:
/// `X-Slack-Request-Timestamp` and `X-Slack-Signature` (Slack's identity is
/// in the body). Add `X-Slack-Retry-Num` and `X-Slack-Retry-Reason` to
/// imitate one of Slack's retries.
///
/// ```
/// use hookgate::{testing::slack_headers, Headers, Slack, Verifier};
/// let at = time::OffsetDateTime::now_utc();
/// let body = br#"{"type":"event_callback","event_id":"Ev1","event":{"type":"app_mention"}}"#;
/// let headers = Headers::from_pairs(slack_headers("signing-secret", body, at));
/// let slack = Slack::builder("signing-secret").build()?;
/// assert!(slack.verify(body, &headers, at).is_ok());
/// assert_eq!(slack.identify(body, &headers)?.id, "Ev1");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn slack_headers(
    secret: impl AsRef<[u8]>,
    body: &[u8],
    at: OffsetDateTime,
) -> Vec<(String, String)> {
    vec![
        (
            "X-Slack-Request-Timestamp".to_owned(),
            at.unix_timestamp().to_string(),
        ),
        (
            "X-Slack-Signature".to_owned(),
            slack_signature(secret, body, at),
        ),
    ]
}
