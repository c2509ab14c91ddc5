//! `Headers`: case-insensitive lookup, repeated headers kept in order, and a
//! `Debug` that never shows values.

use hookgate::{HeaderError, Headers};

fn sample() -> Headers {
    Headers::from_pairs([
        ("Content-Type", "application/json"),
        ("X-Hub-Signature-256", "sha256=abc"),
        ("x-forwarded-for", "10.0.0.1"),
        ("X-Forwarded-For", "10.0.0.2"),
    ])
}

#[test]
fn empty_headers_hold_nothing() {
    for headers in [
        Headers::new(),
        Headers::default(),
        Headers::from_pairs(Vec::<(&str, &str)>::new()),
    ] {
        assert!(headers.is_empty());
        assert_eq!(headers.len(), 0);
        assert_eq!(headers.iter().count(), 0);
        assert!(!headers.contains("x"));
        assert_eq!(headers.get("x"), Ok(None));
        assert_eq!(headers.get_bytes("x"), Ok(None));
        assert_eq!(headers.get_all("x").count(), 0);
    }
}

#[test]
fn length_counts_every_value_of_a_repeated_header() {
    let headers = sample();
    assert!(!headers.is_empty());
    assert_eq!(headers.len(), 4);

    let mut one = Headers::new();
    one.append("A", "1");
    assert!(!one.is_empty());
    assert_eq!(one.len(), 1);
    one.append("a", "2");
    assert_eq!(one.len(), 2);
}

#[test]
fn lookups_ignore_letter_case() {
    let headers = sample();
    for name in [
        "content-type",
        "CONTENT-TYPE",
        "Content-Type",
        "cOnTeNt-TyPe",
    ] {
        assert!(headers.contains(name), "{name}");
        assert_eq!(headers.get_bytes(name), Ok(Some(&b"application/json"[..])));
    }
    assert_eq!(headers.get("x-hub-signature-256"), Ok(Some("sha256=abc")));
    assert!(!headers.contains("X-Hub-Signature"), "no prefix matching");
    assert!(!headers.contains("Content-Type2"));
    assert_eq!(headers.get("X-Hub-Signature"), Ok(None));
}

#[test]
fn repeated_headers_keep_every_value_in_order() {
    let headers = sample();
    let all: Vec<&[u8]> = headers.get_all("X-FORWARDED-FOR").collect();
    assert_eq!(all, [&b"10.0.0.1"[..], b"10.0.0.2"]);
    assert!(headers.contains("x-forwarded-for"));
    let Err(err) = headers.get("X-Forwarded-For") else {
        panic!("a repeated header has no single value")
    };
    assert_eq!(err, headers.get_bytes("X-Forwarded-For").unwrap_err());
    let HeaderError::Repeated(name) = err else {
        panic!("{err:?}")
    };
    assert_eq!(name.as_str(), "X-Forwarded-For", "the name as asked for");
    assert_eq!(format!("{name}"), "X-Forwarded-For");
    assert_eq!(format!("{name:?}"), "\"X-Forwarded-For\"");
    assert_eq!(
        err.to_string(),
        "header `X-Forwarded-For` was sent more than once"
    );
    // A single-valued header next to it is unaffected.
    assert_eq!(headers.get_all("content-type").count(), 1);
}

#[test]
fn values_that_are_not_text_are_refused_by_get_only() {
    let headers = Headers::from_pairs([
        ("Bin", &b"\xff\xfe"[..]),
        ("Nul", b"a\x00b"),
        ("Tab", b"a\tb"),
        ("Empty", b""),
        ("Utf8", "Zoë".as_bytes()),
    ]);
    let Err(HeaderError::NotText(name)) = headers.get("bin") else {
        panic!("invalid UTF-8 is not text")
    };
    assert_eq!(name.as_str(), "bin");
    assert_eq!(
        HeaderError::NotText(name).to_string(),
        "header `bin` is not valid text"
    );
    assert!(matches!(headers.get("nul"), Err(HeaderError::NotText(_))));
    assert_eq!(headers.get("tab"), Ok(Some("a\tb")));
    assert_eq!(headers.get("empty"), Ok(Some("")));
    assert_eq!(headers.get("utf8"), Ok(Some("Zoë")));
    assert_eq!(headers.get_bytes("bin"), Ok(Some(&b"\xff\xfe"[..])));
    assert_eq!(headers.get_bytes("empty"), Ok(Some(&b""[..])));
}

#[test]
fn iteration_yields_every_pair_as_received() {
    let headers = sample();
    let pairs: Vec<(&str, &[u8])> = headers.iter().collect();
    assert_eq!(
        pairs,
        [
            ("Content-Type", &b"application/json"[..]),
            ("X-Hub-Signature-256", b"sha256=abc"),
            ("x-forwarded-for", b"10.0.0.1"),
            ("X-Forwarded-For", b"10.0.0.2"),
        ]
    );
}

#[test]
fn collecting_pairs_builds_the_same_headers() {
    let pairs = [("A", "1"), ("b", "2"), ("a", "3")];
    let collected: Headers = pairs.into_iter().collect();
    assert_eq!(collected, Headers::from_pairs(pairs));
    assert_eq!(collected.len(), 3);
    assert_eq!(
        collected.get_all("a").collect::<Vec<_>>(),
        [&b"1"[..], b"3"]
    );
    assert_eq!(collected.get("B"), Ok(Some("2")));
    let owned: Headers = vec![(String::from("X"), vec![1u8, 2])]
        .into_iter()
        .collect();
    assert_eq!(owned.get_bytes("x"), Ok(Some(&[1u8, 2][..])));
}

#[test]
fn debug_lists_names_in_order_but_no_value() {
    let headers = Headers::from_pairs([("Stripe-Signature", "t=1,v1=deadbeef"), ("B", "secret")]);
    assert_eq!(
        format!("{headers:?}"),
        r#"Headers { names: ["Stripe-Signature", "B"] }"#
    );
    assert_eq!(format!("{:?}", Headers::new()), "Headers { names: [] }");
}
