//! `IpAllowlist` over real HTTP on 127.0.0.1: admitted and refused by CIDR on
//! the webhook routes and the admin routes, refused without `ConnectInfo`,
//! `X-Forwarded-For` honoured only from trusted proxies; and the parsing of
//! CIDR lists and forwarded headers on arbitrary strings.
#![cfg(feature = "axum")]

#[path = "common/admin_http.rs"]
mod admin_http;
mod common;

use std::net::{IpAddr, SocketAddr};

use admin_http::{bearer, call, get, serve, serve_without_connect_info};
use axum::routing::get as route_get;
use common::pipeline::{github, issue_body, store, Tally, GH_SECRET};
use hookgate::axum::admin::AdminRoutes;
use hookgate::axum::{AllowlistError, IpAllowlist, IpRefusal};
use hookgate::{testing, Pipeline, Registry};
use http::{HeaderMap, Method};
use proptest::prelude::*;

const TOKEN: &str = "admin-token-0123456789abcdef";

fn list(entries: &str) -> IpAllowlist {
    entries.parse().expect("a valid list")
}

/// A router answering `GET /` with the client address the handler sees.
fn hello() -> axum::Router {
    axum::Router::new().route("/", route_get(|| async { "hello" }))
}

fn xff(value: &str) -> Vec<(String, String)> {
    vec![("x-forwarded-for".to_owned(), value.to_owned())]
}

#[tokio::test]
async fn admits_and_refuses_by_cidr() {
    for (entries, admitted) in [
        ("127.0.0.0/8", true),
        ("127.0.0.1", true),
        ("10.0.0.0/8, 127.0.0.1/32", true),
        ("::ffff:0:0/96, 127.0.0.0/30", true),
        ("10.0.0.0/8", false),
        ("127.0.0.2/31", false),
        ("::1", false),
        ("2001:db8::/32 192.0.2.0/24", false),
    ] {
        let server = serve(hello().layer(list(entries))).await;
        let reply = get(server.addr, "/", &[]).await;
        if admitted {
            assert_eq!(
                (reply.status, reply.text().as_str()),
                (200, "hello"),
                "{entries}"
            );
        } else {
            assert_eq!(
                (reply.status, reply.code().as_str()),
                (403, "ip_not_allowed"),
                "{entries}"
            );
            assert!(
                !reply.text().contains("127.0.0.1"),
                "the address is not echoed"
            );
            assert_eq!(reply.headers["content-type"], "application/json");
        }
    }
}

#[tokio::test]
async fn refuses_requests_without_connect_info() {
    let server = serve_without_connect_info(hello().layer(list("0.0.0.0/0, ::/0"))).await;
    let reply = get(server.addr, "/", &[]).await;
    assert_eq!(
        (reply.status, reply.code().as_str()),
        (403, "no_client_address")
    );
    let message = reply.json()["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("into_make_service_with_connect_info"),
        "{message}"
    );
}

#[tokio::test]
async fn forwarded_for_is_honoured_only_from_trusted_proxies() {
    // Here the peer (127.0.0.1) is the proxy.
    let trusting = list("192.0.2.0/24")
        .trust_forwarded_for(["127.0.0.1", "10.0.0.0/8"])
        .unwrap();
    let server = serve(hello().layer(trusting)).await;
    for (header, status) in [
        (Some("192.0.2.9"), 200),
        (Some("198.51.100.1"), 403),
        // The rightmost untrusted entry counts; the left is the client's word.
        (Some("198.51.100.1, 192.0.2.9"), 200),
        (Some("192.0.2.9, 198.51.100.1"), 403),
        (Some("198.51.100.1, 192.0.2.9, 10.1.2.3"), 200),
        (Some("192.0.2.9:5000"), 200),
        (Some("[2001:db8::1]:443"), 403),
        (Some("192.0.2.9, not-an-address"), 403),
        (Some("10.1.2.3"), 403),
        (None, 403),
    ] {
        let headers = header.map(xff).unwrap_or_default();
        let reply = get(server.addr, "/", &headers).await;
        assert_eq!(reply.status, status, "{header:?}: {}", reply.text());
    }
    let bad = get(server.addr, "/", &xff("192.0.2.9, not-an-address")).await;
    assert_eq!(bad.code(), "bad_forwarded_for");
    // Two header lines read as one list, in order.
    let mut two = xff("198.51.100.1");
    two.extend(xff("192.0.2.9"));
    assert_eq!(get(server.addr, "/", &two).await.status, 200);

    // Not trusted: the header is ignored, whatever it says.
    for proxies in [None, Some("10.0.0.0/8")] {
        let allowlist = match proxies {
            None => list("192.0.2.0/24"),
            Some(p) => list("192.0.2.0/24").trust_forwarded_for([p]).unwrap(),
        };
        let server = serve(hello().layer(allowlist)).await;
        let reply = get(server.addr, "/", &xff("192.0.2.9")).await;
        assert_eq!(
            (reply.status, reply.code().as_str()),
            (403, "ip_not_allowed"),
            "{proxies:?}"
        );
        let server = serve(hello().layer(list("127.0.0.1"))).await;
        let reply = get(server.addr, "/", &xff("198.51.100.1")).await;
        assert_eq!(reply.status, 200, "the peer counts, not the header");
    }
}

#[tokio::test]
async fn guards_the_webhook_routes_before_any_handler_runs() {
    let tally = Tally::default();
    let mut registry = Registry::new();
    registry.critical("github", "issues", "tally", tally.handler());
    let pipeline = Pipeline::builder()
        .verifier(github())
        .store(store())
        .registry(registry)
        .build()
        .unwrap();
    let routes = |allowlist: &str| {
        axum::Router::new().nest(
            "/webhooks",
            hookgate::axum::routes(pipeline.clone()).layer(list(allowlist)),
        )
    };
    let refusing = serve(routes("192.30.252.0/22, 185.199.108.0/22")).await;
    let admitting = serve(routes("127.0.0.0/8")).await;
    let body = issue_body(1);
    let headers = testing::github_headers(GH_SECRET, body.as_bytes(), "issues", "d-1");
    let refused = call(
        refusing.addr,
        Method::POST,
        "/webhooks/github",
        &headers,
        body.clone(),
    )
    .await;
    assert_eq!(
        (refused.status, refused.code().as_str()),
        (403, "ip_not_allowed")
    );
    assert_eq!(tally.total(), 0, "nothing ran");
    let admitted = call(
        admitting.addr,
        Method::POST,
        "/webhooks/github",
        &headers,
        body,
    )
    .await;
    assert_eq!((admitted.status, admitted.text().as_str()), (200, "ok"));
    assert_eq!(tally.count("d-1"), 1);
}

#[tokio::test]
async fn guards_the_admin_routes_before_the_token() {
    let pipeline = Pipeline::builder()
        .verifier(github())
        .store(store())
        .build()
        .unwrap();
    let admin = |allowlist: &str| {
        AdminRoutes::new(pipeline.clone())
            .bearer_token(TOKEN)
            .allow_ips(list(allowlist))
            .build()
            .unwrap()
    };
    let refusing = serve(axum::Router::new().nest("/admin", admin("10.0.0.0/8"))).await;
    for headers in [vec![], bearer("wrong-token-but-long-enough"), bearer(TOKEN)] {
        let reply = get(refusing.addr, "/admin/health", &headers).await;
        assert_eq!(
            (reply.status, reply.code().as_str()),
            (403, "ip_not_allowed")
        );
        assert!(reply.headers.get("www-authenticate").is_none());
    }
    let admitting = serve(axum::Router::new().nest("/admin", admin("127.0.0.1"))).await;
    assert_eq!(get(admitting.addr, "/admin/health", &[]).await.status, 401);
    assert_eq!(
        get(admitting.addr, "/admin/health", &bearer(TOKEN))
            .await
            .status,
        200
    );
    let bare =
        serve_without_connect_info(axum::Router::new().nest("/admin", admin("127.0.0.1"))).await;
    let reply = get(bare.addr, "/admin/health", &bearer(TOKEN)).await;
    assert_eq!(
        (reply.status, reply.code().as_str()),
        (403, "no_client_address")
    );
}

#[test]
fn lists_are_typed_and_printable() {
    let allowlist = list("192.0.2.0/24")
        .trust_forwarded_for(["10.0.0.0/8"])
        .unwrap();
    assert_eq!(
        format!("{allowlist:?}"),
        "IpAllowlist { networks: [192.0.2.0/24], trusted_proxies: [10.0.0.0/8] }"
    );
    assert_eq!(
        list("192.0.2.0/24")
            .trust_forwarded_for(Vec::<String>::new())
            .unwrap_err(),
        AllowlistError::Empty
    );
    let err = "192.0.2.7/24".parse::<IpAllowlist>().unwrap_err();
    assert!(err.to_string().contains("192.0.2.0/24"), "{err}");
    let long = "x".repeat(10_000);
    match long.parse::<IpAllowlist>().unwrap_err() {
        AllowlistError::Invalid { entry } => assert_eq!(entry.len(), 64),
        other => panic!("{other:?}"),
    }
    assert_eq!(IpRefusal::NotAllowed.code(), "ip_not_allowed");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_lists_never_panic(raw in "\\PC{0,80}") {
        match raw.parse::<IpAllowlist>() {
            Ok(list) => prop_assert!(!list.networks().is_empty()),
            Err(AllowlistError::Invalid { entry } | AllowlistError::HostBitsSet { entry, .. }) => {
                prop_assert!(entry.chars().count() <= 64);
            }
            Err(AllowlistError::Empty) => prop_assert!(raw.split(|c: char| c == ',' || c.is_whitespace()).all(str::is_empty)),
            Err(other) => prop_assert!(false, "{other:?}"),
        }
        let _ = IpAllowlist::new([raw.as_str()]);
    }

    #[test]
    fn cidr_shaped_lists_parse_or_refuse_with_a_type(
        entries in proptest::collection::vec(
            prop_oneof![
                (any::<u32>(), 0u8..=40)
                    .prop_map(|(a, p)| format!("{}/{p}", std::net::Ipv4Addr::from(a))),
                (any::<u32>(), 0u8..=32).prop_map(|(a, p)| {
                    let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
                    format!("{}/{p}", std::net::Ipv4Addr::from(a & mask))
                }),
                (any::<u128>(), 0u8..=130)
                    .prop_map(|(a, p)| format!("{}/{p}", std::net::Ipv6Addr::from(a))),
                any::<u32>().prop_map(|a| std::net::Ipv4Addr::from(a).to_string()),
                "[0-9a-f:.]{0,20}(/[0-9]{1,3})?",
            ],
            1..6,
        )
    ) {
        let each_alone: Vec<bool> = entries.iter().map(|e| IpAllowlist::new([e]).is_ok()).collect();
        match IpAllowlist::new(&entries) {
            Ok(list) => {
                prop_assert!(each_alone.iter().all(|ok| *ok));
                prop_assert_eq!(list.networks().len(), entries.len());
                for net in list.networks() {
                    prop_assert!(list.contains(net.network()));
                    prop_assert!(list.contains(net.broadcast()));
                }
            }
            Err(err) => {
                prop_assert!(each_alone.iter().any(|ok| !ok));
                prop_assert!(!err.to_string().is_empty());
            }
        }
    }

    #[test]
    fn networks_admit_exactly_their_addresses(a in any::<u32>(), prefix in 0u8..=32, b in any::<u32>()) {
        let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
        let network = std::net::Ipv4Addr::from(a & mask);
        let list = IpAllowlist::new([format!("{network}/{prefix}")]).unwrap();
        let inside = (b & mask) == (a & mask);
        prop_assert_eq!(list.contains(IpAddr::from(std::net::Ipv4Addr::from(b))), inside);
        let mapped = std::net::Ipv4Addr::from(b).to_ipv6_mapped();
        prop_assert_eq!(list.contains(IpAddr::from(mapped)), inside, "mapped IPv4 compares as IPv4");
    }

    #[test]
    fn arbitrary_forwarded_headers_never_panic_and_never_admit_a_stranger(
        lines in proptest::collection::vec("[ -~]{0,60}", 0..4)
    ) {
        let allowlist = list("192.0.2.0/24").trust_forwarded_for(["10.0.0.0/8"]).unwrap();
        let mut headers = HeaderMap::new();
        for line in &lines {
            if let Ok(value) = line.parse() {
                headers.append("x-forwarded-for", value);
            }
        }
        let proxy: SocketAddr = "10.0.0.1:443".parse().unwrap();
        if let Ok(client) = allowlist.check(Some(proxy), &headers) {
            prop_assert!(allowlist.contains(client));
        }
        let stranger: SocketAddr = "198.51.100.1:443".parse().unwrap();
        prop_assert_eq!(allowlist.check(Some(stranger), &headers), Err(IpRefusal::NotAllowed));
        prop_assert_eq!(allowlist.check(None, &headers), Err(IpRefusal::NoClientAddress));
    }
}
