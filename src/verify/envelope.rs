//! A borrowed parse of the few top-level JSON fields that name an event.
//!
//! The visitor reads only the top-level keys it knows (`id`, `type`, `object`,
//! `created`, `action`), borrows their string values from the body where no escape
//! forces a copy, and skips everything else without building values. A repeated key
//! keeps its last value, as `JSON.parse` does in the providers' SDKs and as
//! `serde_json::Value` does.
//!
//! Skipping uses serde's `IgnoredAny`, which serde_json checks more loosely than a
//! full parse (no UTF-8 or surrogate check in skipped strings, no number range,
//! no nesting limit). So every entry point here first asks [`json::check`] whether
//! serde_json would accept the whole body: a body is read only when
//! `serde_json::from_slice::<serde_json::Value>` would accept it too.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
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

impl Scalar<'_> {
    /// The string value, if this is a string.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Scalar::Str(s) => Some(s),
            _ => None,
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
    /// The reader itself failed on a body [`json::check`] accepted. Unreachable
    /// while both agree; kept as an error rather than a panic.
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

impl<'a> Envelope<'a> {
    /// Parses `body` as one JSON document, which must be one serde_json accepts
    /// (see [`json::check`]). A document that is not an object yields an empty
    /// envelope.
    pub(crate) fn parse(body: &'a [u8]) -> Result<Self, EnvelopeError> {
        json::check(body).map_err(EnvelopeError::Invalid)?;
        serde_json::from_slice(body).map_err(EnvelopeError::Read)
    }
}

impl<'de> Deserialize<'de> for Envelope<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(EnvelopeVisitor)
    }
}

struct EnvelopeVisitor;

impl<'de> Visitor<'de> for EnvelopeVisitor {
    type Value = Envelope<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON document")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut envelope = Envelope::default();
        while let Some(key) = map.next_key::<Key>()? {
            let slot = match key {
                Key::Id => &mut envelope.id,
                Key::Type => &mut envelope.kind,
                Key::Object => &mut envelope.object,
                Key::Created => &mut envelope.created,
                Key::Action => &mut envelope.action,
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            *slot = Some(map.next_value::<Scalar<'de>>()?);
        }
        Ok(envelope)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Envelope::default())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Envelope::default())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Envelope::default())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Envelope::default())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Envelope::default())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Envelope::default())
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Envelope::default())
    }
}

/// The value of the first top-level `action` key of a JSON object, after checking
/// that serde_json accepts the whole body.
///
/// Once the body is known to be valid, GitHub's `action` (its first key) is read
/// without walking the rest again. `Ok(None)` when the body is not a JSON object
/// or has no top-level `action`. Unlike [`Envelope::parse`], a repeated `action`
/// key keeps its *first* value (as the pipeline has always routed it).
pub(crate) fn first_action(body: &[u8]) -> Result<Option<Scalar<'_>>, Invalid> {
    json::check(body)?;
    let mut found = None;
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    // Reaching `action` ends the parse with a deliberate error; every other error
    // simply means there is no usable action, so the result itself is not needed.
    let _stopped = deserializer.deserialize_any(FirstActionVisitor { found: &mut found });
    Ok(found)
}

struct FirstActionVisitor<'o, 'de> {
    found: &'o mut Option<Scalar<'de>>,
}

impl<'de> Visitor<'de> for FirstActionVisitor<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while let Some(key) = map.next_key::<Key>()? {
            if matches!(key, Key::Action) {
                *self.found = Some(map.next_value::<Scalar<'de>>()?);
                return Err(de::Error::custom("stopped at the first top-level `action`"));
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }
}

enum Key {
    Id,
    Type,
    Object,
    Created,
    Action,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    // serde_json calls this for borrowed and unescaped-into-scratch keys alike, so a
    // key written with escapes (`"i\u0064"`) is recognised as `JSON.parse` would.
    fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
        Ok(match key {
            "id" => Key::Id,
            "type" => Key::Type,
            "object" => Key::Object,
            "created" => Key::Created,
            "action" => Key::Action,
            _ => Key::Other,
        })
    }
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
        f.write_str("a JSON value")
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
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Other)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
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
            action(br#"{"action":"first","action":"second"}"#).as_deref(),
            Some("first")
        );
        assert_eq!(first_action(br#"{"action":3}"#), Ok(Some(Scalar::Int(3))));
        assert_eq!(first_action(br#"{"action":[1]}"#), Ok(Some(Scalar::Other)));
        assert_eq!(first_action(br#"{"ref":"main"}"#), Ok(None));
        assert_eq!(first_action(br#"["action","x"]"#), Ok(None));
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
