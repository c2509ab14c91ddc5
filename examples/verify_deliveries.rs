//! Verifies and identifies one delivery from each provider (Stripe, GitHub, Shopify,
//! Standard Webhooks, Slack, Twilio, a generic `Hmac` one and, with the `paypal`
//! feature, PayPal), the way an HTTP handler would: pick the verifier by its
//! signature header, check the raw bytes, name the event, and map a rejection to its
//! HTTP status. The deliveries are signed with `hookgate::testing`, exactly as the
//! providers sign them.
//!
//! Run with `cargo run --example verify_deliveries` (add `--features paypal` for
//! PayPal).

use hookgate::testing::{
    github_headers, shopify_headers, slack_headers, standard_webhooks_headers, stripe_headers,
    twilio_headers,
};
use hookgate::{
    DedupKey, GitHub, Headers, Hmac, Shopify, Slack, StandardWebhooks, Stripe, Twilio, Verifier,
    VerifyError,
};
use time::OffsetDateTime;

/// The first verifier whose signature header is present (detection proves
/// nothing; `verify` does).
fn detect_provider<'v>(
    verifiers: &'v [Box<dyn Verifier>],
    headers: &Headers,
) -> Result<&'v dyn Verifier, VerifyError> {
    verifiers
        .iter()
        .find(|v| v.detect(headers))
        .map(|v| &**v)
        .ok_or(VerifyError::UnknownProvider)
}

fn handle(verifiers: &[Box<dyn Verifier>], body: &[u8], headers: &Headers) -> u16 {
    let now = OffsetDateTime::now_utc();
    let outcome = detect_provider(verifiers, headers).and_then(|verifier| {
        verifier.verify(body, headers, now)?;
        Ok(verifier)
    });
    match outcome {
        Ok(verifier) => match verifier.identify(body, headers) {
            Ok(event) => {
                println!("{} {} ({})", verifier.provider(), event.kind, event.id);
                200
            }
            Err(err) => {
                println!("unusable payload: {err}");
                err.status()
            }
        },
        Err(err) => {
            println!("rejected: {err}");
            err.status()
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let verifiers: Vec<Box<dyn Verifier>> = vec![
        Box::new(Stripe::builder("whsec_example").build()?),
        Box::new(GitHub::builder("github-example").build()?),
        Box::new(Shopify::builder("shopify-example").build()?),
        Box::new(StandardWebhooks::builder("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").build()?),
        Box::new(Slack::builder("slack-signing-secret").build()?),
        Box::new(
            Twilio::builder("twilio-auth-token")
                .public_url("https://example.com")
                .build()?,
        ),
        Box::new(acme()?),
    ];
    let now = OffsetDateTime::now_utc();

    let stripe_body =
        br#"{"id":"evt_1","object":"event","type":"invoice.paid","created":1700000000}"#;
    let stripe = Headers::from_pairs(stripe_headers("whsec_example", stripe_body, now));
    assert_eq!(handle(&verifiers, stripe_body, &stripe), 200);

    let github_body = br#"{"action":"opened","issue":{"number":1}}"#;
    let github = Headers::from_pairs(github_headers(
        "github-example",
        github_body,
        "issues",
        "d-1",
    ));
    assert_eq!(handle(&verifiers, github_body, &github), 200);

    let shopify_body = br#"{"id":820982911946154508}"#;
    let shopify = Headers::from_pairs(shopify_headers(
        "shopify-example",
        shopify_body,
        "orders/create",
        "w-1",
    ));
    assert_eq!(handle(&verifiers, shopify_body, &shopify), 200);

    let standard_body = br#"{"type":"user.created","data":{"id":"user_1"}}"#;
    let standard = Headers::from_pairs(standard_webhooks_headers(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_1",
        standard_body,
        now,
    ));
    assert_eq!(handle(&verifiers, standard_body, &standard), 200);

    let slack_body =
        br#"{"type":"event_callback","event_id":"Ev1","event":{"type":"app_mention"}}"#;
    let slack = Headers::from_pairs(slack_headers("slack-signing-secret", slack_body, now));
    assert_eq!(handle(&verifiers, slack_body, &slack), 200);

    // Twilio signs the URL it called: the HTTP layer hands over the request
    // line (`Headers::with_request`), the public base comes from configuration.
    let twilio_body = b"AccountSid=AC1&MessageSid=SM1&MessageStatus=delivered";
    let twilio = Headers::from_pairs(twilio_headers(
        "twilio-auth-token",
        "https://example.com/webhooks/twilio",
        twilio_body,
    ))
    .with_request("POST", "/webhooks/twilio");
    assert_eq!(handle(&verifiers, twilio_body, &twilio), 200);

    // Any other provider that signs with an HMAC, configured field by field.
    let acme_body = br#"{"id":"ord_1","type":"order.paid"}"#;
    let acme_unsigned =
        Headers::from_pairs([("X-Acme-Timestamp", now.unix_timestamp().to_string())]);
    let signature = acme()?.sign(0, acme_body, &acme_unsigned)?;
    let acme_signed = Headers::from_pairs([
        ("X-Acme-Timestamp", now.unix_timestamp().to_string()),
        ("X-Acme-Signature", format!("sha256={signature}")),
    ]);
    assert_eq!(handle(&verifiers, acme_body, &acme_signed), 200);

    #[cfg(feature = "paypal")]
    paypal()?;

    // The same Stripe headers on a tampered body: 401.
    assert_eq!(handle(&verifiers, br#"{"id":"evt_2"}"#, &stripe), 401);
    // No known signature header: 400.
    let err = detect_provider(&verifiers, &Headers::new()).unwrap_err();
    assert_eq!(err, VerifyError::UnknownProvider);
    assert_eq!(handle(&verifiers, b"{}", &Headers::new()), 400);
    Ok(())
}

/// A provider signing `sha256=<hex>` over `{timestamp}.{body}`, its event id
/// and kind in the body.
fn acme() -> Result<Hmac, Box<dyn std::error::Error>> {
    Ok(Hmac::builder("acme", "acme-secret")
        .signature_header("X-Acme-Signature")
        .prefix("sha256=")
        .template("{timestamp}.{body}")
        .timestamp_header("X-Acme-Timestamp", std::time::Duration::from_secs(300))
        .dedup(DedupKey::json_pointer("/id"))
        .kind_pointer("/type")
        .build()?)
}

/// PayPal signs with RSA and a certificate fetched from `paypal-cert-url`:
/// the one asynchronous step, `prepare`, fetches and checks it (through your
/// `CertificateSource`; here a local test PKI stands in for PayPal's), then
/// `verify` is synchronous like every other verifier's.
#[cfg(feature = "paypal")]
fn paypal() -> Result<(), Box<dyn std::error::Error>> {
    use hookgate::testing::{PayPalTestPki, StaticCertificates};
    use hookgate::verify::TrustAnchors;
    use hookgate::PayPal;

    let pki = PayPalTestPki::shared();
    let url = "https://api-m.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-a5cafa77";
    let paypal = PayPal::builder(
        "1JE4291016473214C",
        StaticCertificates::new([(url, pki.chain_pem())]),
    )
    .trust_anchors(TrustAnchors::from_pem(pki.root_pem())?)
    .build()?;
    let body = br#"{"id":"WH-2WR32451HC0233532-67976317FL4543714","create_time":"2026-11-01T10:49:03.439Z","event_type":"PAYMENT.CAPTURE.COMPLETED","resource":{"id":"42311647XV020574X"}}"#;
    let now = OffsetDateTime::now_utc();
    let headers = Headers::from_pairs(pki.headers(url, "1JE4291016473214C", body, now));
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    if let Some(prepare) = paypal.prepare(&headers, now) {
        runtime.block_on(prepare)?;
    }
    paypal.verify(body, &headers, now)?;
    let event = paypal.identify(body, &headers)?;
    println!("{} {} ({})", paypal.provider(), event.kind, event.id);
    Ok(())
}
