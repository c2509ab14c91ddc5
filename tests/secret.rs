//! `Secret` and `SecretSet`: what they hold, what they report, and that they
//! never print a secret's bytes.

use hookgate::{Secret, SecretSet};

#[test]
fn a_secret_holds_exactly_the_bytes_given() {
    let secret = Secret::new(b"whsec_abc".to_vec());
    assert_eq!(secret.expose(), b"whsec_abc");
    assert_eq!(secret.len(), 9);
    assert!(!secret.is_empty());

    let empty = Secret::new(Vec::new());
    assert_eq!(empty.len(), 0);
    assert!(empty.is_empty());

    let one = Secret::from("k");
    assert_eq!(one.len(), 1);
    assert!(!one.is_empty());
}

#[test]
fn every_conversion_keeps_the_bytes() {
    let raw: &[u8] = b"\x00\xffraw";
    let from_str = Secret::from("whsec_str");
    let from_string = Secret::from(String::from("whsec_string"));
    let from_slice = Secret::from(raw);
    let from_vec = Secret::from(raw.to_vec());
    assert_eq!(from_str.expose(), b"whsec_str");
    assert_eq!(from_string.expose(), b"whsec_string");
    assert_eq!(from_slice.expose(), raw);
    assert_eq!(from_vec.expose(), raw);
    assert_eq!(from_vec.len(), 5);
}

#[test]
fn surrounding_whitespace_is_found_at_either_end_only() {
    for text in ["abc\n", " abc", "\tabc", "abc\r\n", " "] {
        assert!(Secret::from(text).has_surrounding_whitespace(), "{text:?}");
    }
    for text in ["abc", "a b", "", "a\nb"] {
        assert!(!Secret::from(text).has_surrounding_whitespace(), "{text:?}");
    }
}

#[test]
fn a_secret_prints_as_redacted_text_only() {
    let secret = Secret::new("whsec_very_secret");
    assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
    assert_eq!(format!("{secret}"), "<redacted>");
    assert_eq!(secret.to_string(), "<redacted>");
    // Also inside other values' Debug output.
    let nested = format!("{:?}", Some(&secret));
    assert_eq!(nested, "Some(Secret(<redacted>))");
    assert!(!format!("{secret:#?}").contains("very_secret"));
}

#[test]
fn a_set_holds_its_secrets_in_order() {
    let set = SecretSet::new("new").with("old");
    assert_eq!(set.len(), 2);
    assert!(!set.is_empty());
    let held: Vec<&[u8]> = set.iter().map(Secret::expose).collect();
    assert_eq!(held, [&b"new"[..], b"old"]);

    let mut pushed = SecretSet::new("first");
    assert_eq!(pushed.len(), 1);
    assert!(!pushed.is_empty());
    pushed.push(Secret::from("second"));
    pushed.push(Secret::from("third"));
    assert_eq!(pushed.len(), 3);
    let held: Vec<&[u8]> = pushed.iter().map(Secret::expose).collect();
    assert_eq!(held, [&b"first"[..], b"second", b"third"]);

    let converted: SecretSet = "only".into();
    assert_eq!(converted.len(), 1);
    assert_eq!(
        converted.iter().next().map(Secret::expose),
        Some(&b"only"[..])
    );
}

#[test]
fn a_set_reports_whitespace_in_any_of_its_secrets() {
    assert!(!SecretSet::new("a").with("b").any_surrounding_whitespace());
    assert!(SecretSet::new("a").with("b\n").any_surrounding_whitespace());
    assert!(SecretSet::new(" a").with("b").any_surrounding_whitespace());
}

#[test]
fn a_set_prints_its_size_and_nothing_else() {
    let set = SecretSet::new("whsec_new_secret").with("whsec_old_secret");
    assert_eq!(format!("{set:?}"), "SecretSet { secrets: 2 }");
    assert_eq!(
        format!("{:?}", SecretSet::new("x")),
        "SecretSet { secrets: 1 }"
    );
    assert!(!format!("{set:#?}").contains("whsec"));
}
