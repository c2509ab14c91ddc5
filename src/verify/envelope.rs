//! A borrowed parse of the few top-level JSON fields that name an event.
//!
//! The visitor reads only the top-level keys it knows (`id`, `type`, `object`,
//! `created`, `action`), borrows their string values from the body where no escape
//! forces a copy, and skips everything else without building values. A repeated key
//! keeps its last value, as `JSON.parse` does in the providers' SDKs.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

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

impl<'a> Envelope<'a> {
    /// Parses `body` as one JSON document (trailing bytes other than whitespace are
    /// an error). A document that is not an object yields an empty envelope.
    pub(crate) fn parse(body: &'a [u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(body)
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
    fn non_objects_are_empty_and_garbage_is_an_error() {
        assert_eq!(Envelope::parse(b"[1,2]").unwrap(), Envelope::default());
        assert_eq!(Envelope::parse(b" \"x\" ").unwrap(), Envelope::default());
        assert_eq!(Envelope::parse(b"null").unwrap(), Envelope::default());
        assert!(Envelope::parse(b"{\"id\":\"a\"} x").is_err());
        assert!(Envelope::parse(b"").is_err());
        assert!(Envelope::parse(b"\xff").is_err());
    }
}
