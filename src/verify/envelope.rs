//! A borrowed read of the few top-level JSON fields that name an event.
//!
//! [`json::check_members`] validates the whole body exactly as serde_json would
//! (so nothing is read from a body `Event::json` would refuse) and reports where
//! each top-level member's value lies; only the values of the keys identification
//! needs (`id`, `type`, `object`, `created`, `action`) are then decoded, by
//! serde_json, borrowing strings from the body where no escape forces a copy. A
//! key written with escapes (`"i\u0064"`) is recognised as `JSON.parse` would. A
//! repeated key keeps its last value in an [`Envelope`], as `JSON.parse` and
//! `serde_json::Value` do; [`first_action`] keeps the first.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

use super::json::{self, Invalid};

/// A top-level JSON value, reduced to what identification needs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar<'a> {
    /// A string (borrowed when the JSON text has no escapes).
    Str(Cow<'a, str>),
    /// An integer that fits in `i64`.
    Int(i64),
    /// Any other value (float, bool, null, array, object, huge integer).
    Other,
}

impl<'a> Scalar<'a> {
    /// The string value, if this is a string.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Scalar::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Reads one value that [`json::check`] accepted as part of a document. Only
    /// strings and numbers are decoded; the rest is recognised by its first byte.
    fn read(text: &'a [u8]) -> Result<Self, serde_json::Error> {
        match text.first() {
            Some(b'"' | b'-' | b'0'..=b'9') => serde_json::from_slice(text),
            _ => Ok(Scalar::Other),
        }
    }
}

/// The known top-level fields of a provider's JSON body.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Envelope<'a> {
    pub(crate) id: Option<Scalar<'a>>,
    pub(crate) kind: Option<Scalar<'a>>,
    pub(crate) object: Option<Scalar<'a>>,
    pub(crate) created: Option<Scalar<'a>>,
    pub(crate) action: Option<Scalar<'a>>,
}

/// Why a body's envelope could not be read.
#[derive(Debug)]
pub(crate) enum EnvelopeError {
    /// serde_json would refuse the body.
    Invalid(Invalid),
    /// serde_json failed on a value of a body [`json::check`] accepted.
    /// Unreachable while both agree; kept as an error rather than a panic.
    Read(serde_json::Error),
}

impl fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvelopeError::Invalid(invalid) => invalid.fmt(f),
            EnvelopeError::Read(err) => err.fmt(f),
        }
    }
}

/// The top-level keys identification reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Id,
    Type,
    Object,
    Created,
    Action,
}

impl Field {
    const COUNT: usize = 5;

    /// The field a key names, from the key's JSON text (quotes included).
    fn of(key: &[u8]) -> Option<Self> {
        let decoded;
        let name: &[u8] = if key.contains(&b'\\') {
            // Escaped keys are rare: let serde_json decode them.
            decoded = serde_json::from_slice::<String>(key).ok()?;
            decoded.as_bytes()
        } else {
            key.get(1..key.len().saturating_sub(1))?
        };
        Some(match name {
            b"id" => Field::Id,
            b"type" => Field::Type,
            b"object" => Field::Object,
            b"created" => Field::Created,
            b"action" => Field::Action,
            _ => return None,
        })
    }
}

/// Reads the value at `span` of `body`, if there is one.
fn read_at(body: &[u8], span: Option<Range<usize>>) -> Result<Option<Scalar<'_>>, EnvelopeError> {
    span.and_then(|span| body.get(span))
        .map(Scalar::read)
        .transpose()
        .map_err(EnvelopeError::Read)
}

impl<'a> Envelope<'a> {
    /// Reads `body`, which must be one JSON document serde_json accepts (see
    /// [`json::check`]). A document that is not an object yields an empty
    /// envelope.
    pub(crate) fn parse(body: &'a [u8]) -> Result<Self, EnvelopeError> {
        let mut spans: [Option<Range<usize>>; Field::COUNT] = Default::default();
        json::check_members(body, |key, value| {
            if let Some(field) = Field::of(key) {
                spans[field as usize] = Some(value);
            }
        })
        .map_err(EnvelopeError::Invalid)?;
        let [id, kind, object, created, action] = spans;
        Ok(Self {
            id: read_at(body, id)?,
            kind: read_at(body, kind)?,
            object: read_at(body, object)?,
            created: read_at(body, created)?,
            action: read_at(body, action)?,
        })
    }
}

/// The value of the first top-level `action` key of a JSON object, once the whole
/// body is known to be a document serde_json accepts.
///
/// `Ok(None)` when the body is not a JSON object or has no top-level `action`.
/// Unlike [`Envelope::parse`], a repeated `action` key keeps its *first* value
/// (as the pipeline has always routed GitHub deliveries).
pub(crate) fn first_action(body: &[u8]) -> Result<Option<Scalar<'_>>, EnvelopeError> {
    let mut first = None;
    json::check_members(body, |key, value| {
        if first.is_none() && Field::of(key) == Some(Field::Action) {
            first = Some(value);
        }
    })
    .map_err(EnvelopeError::Invalid)?;
    read_at(body, first)
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON string or number")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Scalar::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(i64::try_from(v).map_or(Scalar::Other, Scalar::Int))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Scalar::Other)
    }
    // A number arrives as a map when a dependent enables serde_json's
    // `arbitrary_precision` feature.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_known_fields_and_borrows_plain_strings() {
        let body = br#"{"id":"evt_1","data":{"id":"inner","type":"x"},"type":"a.b","created":17,"extra":[1,2,{"action":"no"}]}"#;
        let env = Envelope::parse(body).unwrap();
        assert!(matches!(env.id, Some(Scalar::Str(Cow::Borrowed("evt_1")))));
        assert_eq!(env.kind.as_ref().and_then(Scalar::as_str), Some("a.b"));
        assert_eq!(env.created, Some(Scalar::Int(17)));
        assert_eq!(env.action, None);
        assert_eq!(env.object, None);
    }

    #[test]
    fn escapes_and_repeats_behave_like_json_parse() {
        let env = Envelope::parse(br#"{"i\u0064":"a\"b","id":"second","action":1.5}"#).unwrap();
        assert_eq!(env.id, Some(Scalar::Str(Cow::Borrowed("second"))));
        assert_eq!(env.action, Some(Scalar::Other));
        let env = Envelope::parse(br#"{"id":"a\nb"}"#).unwrap();
        assert!(matches!(env.id, Some(Scalar::Str(Cow::Owned(ref s))) if s == "a\nb"));
    }

    #[test]
    fn first_action_stops_at_the_first_top_level_action() {
        let action = |body: &[u8]| {
            first_action(body)
                .unwrap()
                .and_then(|s| s.as_str().map(str::to_owned))
        };
        assert_eq!(
            action(br#"{"action":"opened","issue":{"action":"x"}}"#).as_deref(),
            Some("opened")
        );
        assert_eq!(
            action(br#"{"issue":{"action":"nested"},"action":"closed"}"#).as_deref(),
            Some("closed")
        );
        assert!(matches!(
            first_action(br#"{"action":"a","rest":1}"#),
            Ok(Some(Scalar::Str(Cow::Borrowed("a"))))
        ));
        assert_eq!(
            first_action(br#"{"action":"first","action":"second"}"#)
                .unwrap()
                .and_then(|s| s.as_str().map(str::to_owned))
                .as_deref(),
            Some("first")
        );
        assert_eq!(
            action(br#"{"action":"first","action":"second"}"#).as_deref(),
            Some("first")
        );
        assert_eq!(
            first_action(br#"{"action":3}"#).unwrap(),
            Some(Scalar::Int(3))
        );
        assert_eq!(
            first_action(br#"{"action":[1]}"#).unwrap(),
            Some(Scalar::Other)
        );
        assert_eq!(
            first_action(br#"{"action":{"a":1}}"#).unwrap(),
            Some(Scalar::Other)
        );
        assert_eq!(
            first_action(br#"{"\u0061ction":"esc"}"#).unwrap(),
            Some(Scalar::Str("esc".into()))
        );
        assert_eq!(first_action(br#"{"ref":"main"}"#).unwrap(), None);
        assert_eq!(first_action(br#"["action","x"]"#).unwrap(), None);
    }

    #[test]
    fn nothing_is_read_from_a_body_serde_json_refuses() {
        for body in [
            &br#"{"action":"a","rest":"#[..],
            br#"{"ref": ,"action":"x"}"#,
            b"payload=%7B%22action%22%7D",
            b"",
            br#"{"action":"a","skipped":"\ud800"}"#,
            b"{\"action\":\"a\",\"skipped\":\"\xff\"}",
            br#"{"action":"a","n":1e400}"#,
        ] {
            assert!(
                first_action(body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
            assert!(
                Envelope::parse(body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn non_objects_are_empty_and_garbage_is_an_error() {
        assert_eq!(Envelope::parse(b"[1,2]").unwrap(), Envelope::default());
        assert_eq!(Envelope::parse(b" \"x\" ").unwrap(), Envelope::default());
        assert_eq!(Envelope::parse(b"null").unwrap(), Envelope::default());
        assert!(Envelope::parse(b"{\"id\":\"a\"} x").is_err());
        assert!(Envelope::parse(b"").is_err());
        assert!(Envelope::parse(b"\xff").is_err());
    }
}
