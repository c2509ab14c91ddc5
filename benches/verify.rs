//! Verification cost next to the bare HMAC-SHA256 of the same signed bytes.
//!
//! One group per provider; in each, `bare_hmac` (hmac + sha2 keyed once, the signed
//! pieces streamed, the tag compared with subtle: nothing else) and `hookgate` (the
//! verifier's full `verify`, header lookup and parsing included) share the body-size
//! parameter, so `bench-ratios` prints hookgate's overhead as a ratio.
//! `HOOKGATE_BENCH_CLOCK=cpu` measures thread CPU time instead of wall time (see
//! `support`), for a machine shared with other busy processes.

mod common;
mod support;

use std::hint::black_box;

use common::{bare_hmac, keyed, tag, SECRET};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hookgate::testing::{
    github_headers, shopify_headers, slack_headers, standard_webhooks_headers, stripe_headers,
};
use hookgate::{GitHub, Headers, Shopify, Slack, StandardWebhooks, Stripe, Verifier};
use support::Clock;
use time::OffsetDateTime;

const SIZES: [(usize, &str); 3] = [(1024, "1KiB"), (16 * 1024, "16KiB"), (256 * 1024, "256KiB")];

fn body(len: usize) -> Vec<u8> {
    let mut body = br#"{"id":"evt_1NsfZlLkdIwHu7ixHnmc3TzS","object":"event","type":"invoice.paid","data":{"pad":""#.to_vec();
    body.resize(len - 3, b'x');
    body.extend_from_slice(b"\"}}");
    body
}

/// The headers a real delivery carries besides the signature.
fn with_common(mut pairs: Vec<(String, String)>) -> Headers {
    for (name, value) in [
        ("Host", "hooks.example.com"),
        ("User-Agent", "provider-webhooks/1.0"),
        ("Content-Type", "application/json; charset=utf-8"),
        ("Accept", "*/*"),
        ("Accept-Encoding", "gzip"),
        ("X-Forwarded-For", "203.0.113.7"),
    ] {
        pairs.insert(0, (name.to_owned(), value.to_owned()));
    }
    Headers::from_pairs(pairs)
}

fn group(
    c: &mut Criterion<Clock>,
    name: &str,
    verifier: &dyn Verifier,
    sign: impl Fn(&[u8]) -> Vec<(String, String)>,
    prefix: &[u8],
) {
    let keyed = keyed();
    let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
    let mut group = c.benchmark_group(name);
    for (len, label) in SIZES {
        let body = body(len);
        let headers = with_common(sign(&body));
        let expected = tag(&[prefix, &body]);
        assert!(verifier.verify(&body, &headers, now).is_ok());
        assert!(bare_hmac(&keyed, &[prefix, &body], &expected));
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(BenchmarkId::new("bare_hmac", label), &body, |b, body| {
            b.iter(|| bare_hmac(&keyed, &[black_box(prefix), black_box(body)], &expected))
        });
        group.bench_with_input(BenchmarkId::new("hookgate", label), &body, |b, body| {
            b.iter(|| verifier.verify(black_box(body), black_box(&headers), now))
        });
    }
    group.finish();
}

/// Twilio: HMAC-SHA1 over the URL and the sorted form parameters (`verify_twilio`),
/// or over the URL with the body's SHA-256 in its `bodySHA256` query parameter
/// (`verify_twilio_json`); `bare_hmac` is HMAC-SHA1 of the URL followed by the
/// body as received, the same bytes in the same hash.
fn twilio(c: &mut Criterion<Clock>) {
    use hmac::{Hmac, Mac};
    use sha1::Sha1;
    use subtle::ConstantTimeEq;

    let keyed =
        <Hmac<Sha1> as Mac>::new_from_slice(SECRET.as_bytes()).expect("any key length works");
    let bare = |url: &[u8], body: &[u8], expected: &[u8; 20]| {
        let mut mac = keyed.clone();
        mac.update(url);
        mac.update(body);
        let tag: [u8; 20] = mac.finalize().into_bytes().into();
        bool::from(tag.ct_eq(expected))
    };
    let verifier = hookgate::Twilio::builder(SECRET)
        .public_url("https://hooks.example.com")
        .build()
        .unwrap();
    let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
    let form = |len: usize| {
        // An inbound message whose `Body` fills the size: words and `+` spaces.
        let mut body = b"ToCountry=US&ToState=CA&SmsMessageSid=SM1f0e8ae6ade43cb3c0ce4525424e404f&NumMedia=0&ToCity=&FromZip=94105&SmsSid=SM1f0e8ae6ade43cb3c0ce4525424e404f&FromState=CA&SmsStatus=received&FromCity=SAN+FRANCISCO&FromCountry=US&To=%2B15017122661&ToZip=&NumSegments=1&MessageSid=SM1f0e8ae6ade43cb3c0ce4525424e404f&AccountSid=AC1f0e8ae6ade43cb3c0ce4525424e404f&From=%2B15558675310&ApiVersion=2010-04-01&Body=".to_vec();
        while body.len() < len {
            body.extend_from_slice(b"Ahoy+there%21+");
        }
        body.truncate(len);
        body
    };
    let json = |len: usize| body(len);
    for (name, make, is_json) in [
        ("verify_twilio", &form as &dyn Fn(usize) -> Vec<u8>, false),
        ("verify_twilio_json", &json, true),
    ] {
        let mut group = c.benchmark_group(name);
        for (len, label) in SIZES {
            let body = make(len);
            let mut url = "https://hooks.example.com/webhooks/twilio?tenant=7".to_owned();
            if is_json {
                url = hookgate::testing::twilio_json_url(&url, &body);
            }
            let target = url
                .strip_prefix("https://hooks.example.com")
                .unwrap()
                .to_owned();
            let headers = with_common(hookgate::testing::twilio_headers(SECRET, &url, &body))
                .with_request("POST", &target);
            assert!(verifier.verify(&body, &headers, now).is_ok());
            let mut expected_mac = keyed.clone();
            expected_mac.update(url.as_bytes());
            expected_mac.update(&body);
            let expected: [u8; 20] = expected_mac.finalize().into_bytes().into();
            assert!(bare(url.as_bytes(), &body, &expected));
            group.throughput(Throughput::Bytes(len as u64));
            group.bench_with_input(BenchmarkId::new("bare_hmac", label), &body, |b, body| {
                b.iter(|| bare(black_box(url.as_bytes()), black_box(body), &expected))
            });
            group.bench_with_input(BenchmarkId::new("hookgate", label), &body, |b, body| {
                b.iter(|| verifier.verify(black_box(body), black_box(&headers), now))
            });
        }
        group.finish();
    }
}
fn verify(c: &mut Criterion<Clock>) {
    twilio(c);
    let at = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
    let stripe = Stripe::builder(SECRET).build().unwrap();
    group(
        c,
        "verify_stripe",
        &stripe,
        |body| stripe_headers(SECRET, body, at),
        b"1700000000.",
    );
    let github = GitHub::builder(SECRET).build().unwrap();
    let delivery = "72d3162e-cc78-11e3-81ab-4c9367dc0958";
    group(
        c,
        "verify_github",
        &github,
        |body| github_headers(SECRET, body, "push", delivery),
        b"",
    );
    let shopify = Shopify::builder(SECRET).build().unwrap();
    let webhook = "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043";
    group(
        c,
        "verify_shopify",
        &shopify,
        |body| shopify_headers(SECRET, body, "orders/create", webhook),
        b"",
    );
    let slack = Slack::builder(SECRET).build().unwrap();
    group(
        c,
        "verify_slack",
        &slack,
        |body| slack_headers(SECRET, body, at),
        b"v0:1700000000:",
    );
    // The `whsec_` form of the bench secret: its key is the secret's bytes, the
    // key `bare_hmac` uses.
    let whsec = format!(
        "whsec_{}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, SECRET)
    );
    let standard = StandardWebhooks::builder(whsec.as_str()).build().unwrap();
    let message = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W";
    group(
        c,
        "verify_standard_webhooks",
        &standard,
        |body| standard_webhooks_headers(&whsec, message, body, at),
        b"msg_2KWPBgLlAfxdpx2AI54pPJ85f4W.1700000000.",
    );
    hmac_groups(c);
    #[cfg(feature = "paypal")]
    paypal_group(c);
    identify_groups(c);
}

/// A Stripe `checkout.session.completed` event of about `len` bytes whose
/// size is in its line items (short strings, numbers, nested objects: a
/// realistic density of JSON structure, unlike [`body`]'s one long string).
fn stripe_items(len: usize) -> Vec<u8> {
    let head = r#"{"id":"evt_1NsfZlLkdIwHu7ixHnmc3TzS","object":"event","api_version":"2024-06-20","created":1700000000,"data":{"object":{"id":"cs_test_a1b2c3","object":"checkout.session","amount_subtotal":1900,"amount_total":1900,"currency":"usd","customer_details":{"email":"jenny@example.com","name":"Jenny Rosen","phone":null},"metadata":{},"payment_status":"paid","status":"complete","line_items":{"object":"list","data":["#;
    let tail = r#"],"has_more":false}}},"livemode":false,"pending_webhooks":1,"request":{"id":null,"idempotency_key":null},"type":"checkout.session.completed"}"#;
    let mut body = head.to_owned();
    let mut n = 0;
    while body.len() + tail.len() < len {
        if n > 0 {
            body.push(',');
        }
        body.push_str(&format!(
            r#"{{"id":"li_{n:08}","object":"item","amount_subtotal":1900,"amount_total":1900,"currency":"usd","description":"Aviator sunglasses, polarized","price":{{"id":"price_1Ab2","unit_amount":1900,"recurring":null}},"quantity":1}}"#
        ));
        n += 1;
    }
    body.push_str(tail);
    body.into_bytes()
}

/// Naming a verified delivery next to the bare HMAC of the same bytes:
/// `identify` is `Verifier::identify` alone (the JSON validation and the
/// id/kind/timestamp reads), `verify_identify` both steps, as the pipeline
/// runs them. The ratio of `identify` reads as its share of an HMAC.
fn identify_groups(c: &mut Criterion<Clock>) {
    let at = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
    let stripe = Stripe::builder(SECRET).build().unwrap();
    let github = GitHub::builder(SECRET).build().unwrap();
    let shopify = Shopify::builder(SECRET).build().unwrap();
    type Sign<'a> = Box<dyn Fn(&[u8]) -> Vec<(String, String)> + 'a>;
    type Provider<'a> = (
        &'a str,
        &'a dyn Verifier,
        Sign<'a>,
        &'a [u8],
        fn(usize) -> Vec<u8>,
    );
    let providers: [Provider; 4] = [
        (
            "identify_stripe",
            &stripe,
            Box::new(|body: &[u8]| stripe_headers(SECRET, body, at)),
            b"1700000000.",
            body,
        ),
        (
            "identify_stripe_items",
            &stripe,
            Box::new(|body: &[u8]| stripe_headers(SECRET, body, at)),
            b"1700000000.",
            stripe_items,
        ),
        (
            "identify_github",
            &github,
            Box::new(|body: &[u8]| {
                github_headers(
                    SECRET,
                    body,
                    "issues",
                    "72d3162e-cc78-11e3-81ab-4c9367dc0958",
                )
            }),
            b"",
            body,
        ),
        (
            "identify_shopify",
            &shopify,
            Box::new(|body: &[u8]| {
                shopify_headers(SECRET, body, "orders/create", "b54557e4-bdd9-4b37")
            }),
            b"",
            body,
        ),
    ];
    let keyed = keyed();
    for (name, verifier, sign, prefix, make) in providers {
        let mut group = c.benchmark_group(name);
        for (len, label) in SIZES {
            let body = make(len);
            let headers = with_common(sign(&body));
            let expected = tag(&[prefix, &body]);
            assert!(verifier.verify(&body, &headers, at).is_ok());
            assert!(verifier.identify(&body, &headers).is_ok());
            group.throughput(Throughput::Bytes(len as u64));
            group.bench_with_input(BenchmarkId::new("bare_hmac", label), &body, |b, body| {
                b.iter(|| bare_hmac(&keyed, &[black_box(prefix), black_box(body)], &expected))
            });
            group.bench_with_input(BenchmarkId::new("identify", label), &body, |b, body| {
                b.iter(|| verifier.identify(black_box(body), black_box(&headers)))
            });
            group.bench_with_input(
                BenchmarkId::new("verify_identify", label),
                &body,
                |b, body| {
                    b.iter(|| {
                        verifier
                            .verify(black_box(body), black_box(&headers), at)
                            .map(|_| verifier.identify(body, &headers))
                    })
                },
            );
        }
        group.finish();
    }
}

/// The generic [`Hmac`](hookgate::Hmac) verifier in two common shapes:
/// `verify_hmac`, a `sha256=` hex signature over the body (GitHub-like), and
/// `verify_hmac_template`, a base64 signature over `{id}.{timestamp}.{body}`
/// with a timestamp tolerance (Standard-Webhooks-like).
fn hmac_groups(c: &mut Criterion<Clock>) {
    use hookgate::{DedupKey, Hmac, SignatureEncoding};

    let plain = Hmac::builder("acme", SECRET)
        .signature_header("X-Acme-Signature")
        .prefix("sha256=")
        .id_header("X-Acme-Delivery")
        .build()
        .unwrap();
    group(
        c,
        "verify_hmac",
        &plain,
        |body| {
            let mut pairs = vec![("X-Acme-Delivery".to_owned(), "d-1".to_owned())];
            let headers = Headers::from_pairs(pairs.clone());
            let tag = plain.sign(0, body, &headers).unwrap();
            pairs.push(("X-Acme-Signature".to_owned(), format!("sha256={tag}")));
            pairs
        },
        b"",
    );
    let template = Hmac::builder("acme", SECRET)
        .signature_header("X-Acme-Signature")
        .encoding(SignatureEncoding::Base64)
        .template("{id}.{timestamp}.{body}")
        .id_header("X-Acme-Id")
        .timestamp_header("X-Acme-Timestamp", std::time::Duration::from_secs(300))
        .dedup(DedupKey::header("X-Acme-Id"))
        .build()
        .unwrap();
    group(
        c,
        "verify_hmac_template",
        &template,
        |body| {
            let mut pairs = vec![
                ("X-Acme-Id".to_owned(), "msg_1".to_owned()),
                ("X-Acme-Timestamp".to_owned(), "1700000000".to_owned()),
            ];
            let headers = Headers::from_pairs(pairs.clone());
            let tag = template.sign(0, body, &headers).unwrap();
            pairs.push(("X-Acme-Signature".to_owned(), tag));
            pairs
        },
        b"msg_1.1700000000.",
    );
}

/// PayPal: RSA-SHA256 (PKCS#1 v1.5, 2048-bit key) over
/// `{transmission_id}|{transmission_time}|{webhook_id}|{crc32(body)}`, the
/// certificate already fetched and cached. Beside `bare_hmac` (HMAC-SHA256
/// of the body) sits `bare_rsa`: a bare RSA-SHA256 verify of the same body
/// with a key of the same size (SHA-256 of the body, then the RSA check),
/// the baseline the issue reads PayPal against
/// (`bench-ratios --baseline bare_rsa`).
#[cfg(feature = "paypal")]
fn paypal_group(c: &mut Criterion<Clock>) {
    use hookgate::testing::{PayPalTestPki, StaticCertificates};
    use hookgate::verify::{PayPal, TrustAnchors};
    use rsa::sha2::{Digest, Sha256};
    use rsa::{Pkcs1v15Sign, PrivateKey};

    let url = "https://api.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-df8cd2d5";
    let webhook = "1JE4291016473214C";
    let pki = PayPalTestPki::generate();
    let source = StaticCertificates::new([(url, pki.chain_pem())]);
    let paypal = PayPal::builder(webhook, source)
        .trust_anchors(TrustAnchors::from_pem(pki.root_pem()).unwrap())
        .build()
        .unwrap();
    let now = OffsetDateTime::now_utc();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let first = Headers::from_pairs(pki.headers(url, webhook, b"{}", now));
    runtime
        .block_on(paypal.prepare(&first, now).expect("a first fetch"))
        .unwrap();
    let key = PrivateKey::new(&mut getrandom::SysRng, 2048).unwrap();
    let public = key.to_public_key();
    let keyed = keyed();
    let mut group = c.benchmark_group("verify_paypal");
    for (len, label) in SIZES {
        let body = body(len);
        let headers = with_common(pki.headers(url, webhook, &body, now));
        assert!(paypal.prepare(&headers, now).is_none(), "cached");
        assert!(paypal.verify(&body, &headers, now).is_ok());
        let expected = tag(&[&body]);
        let signature = key
            .sign(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(&body))
            .unwrap();
        let bare_rsa = |body: &[u8]| {
            public
                .verify(
                    Pkcs1v15Sign::new::<Sha256>(),
                    &Sha256::digest(body),
                    &signature,
                )
                .is_ok()
        };
        assert!(bare_rsa(&body));
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(BenchmarkId::new("bare_hmac", label), &body, |b, body| {
            b.iter(|| bare_hmac(&keyed, &[black_box(body)], &expected))
        });
        group.bench_with_input(BenchmarkId::new("bare_rsa", label), &body, |b, body| {
            b.iter(|| bare_rsa(black_box(body)))
        });
        group.bench_with_input(BenchmarkId::new("hookgate", label), &body, |b, body| {
            b.iter(|| paypal.verify(black_box(body), black_box(&headers), now))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = support::criterion();
    targets = verify
}
criterion_main!(benches);
