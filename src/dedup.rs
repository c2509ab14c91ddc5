//! [`DedupKey`]: where an event's deduplication id comes from, for providers
//! whose id is not where the verifier looks, or that have none of their own.
//!
//! Set it per provider with
//! [`PipelineBuilder::dedup_key`](crate::PipelineBuilder::dedup_key). The id
//! it derives is the `event_id` of the idempotency key
//! (`provider:event_id`), of the [`Event`](crate::Event), the journal and
//! the outcome.
//!
//! ```
//! use hookgate::dedup::DedupKey;
//! use hookgate::Headers;
//!
//! // Adyen: one notification per `eventCode` of a `pspReference`.
//! let key = DedupKey::composite([
//!     DedupKey::json_pointer("/notificationItems/0/NotificationRequestItem/eventCode"),
//!     DedupKey::json_pointer("/notificationItems/0/NotificationRequestItem/pspReference"),
//! ]);
//! let body = br#"{"notificationItems":[{"NotificationRequestItem":{"eventCode":"AUTHORISATION","pspReference":"8535296650153317"}}]}"#;
//! assert_eq!(key.derive(None, body, &Headers::new())?, "AUTHORISATION:8535296650153317");
//! # Ok::<(), hookgate::IdentifyError>(())
//! ```

use std::fmt;

use sha2::{Digest, Sha256};

use crate::headers::{as_text, Headers};
use crate::verify::IdentifyError;

/// Where an event's deduplication id comes from.
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum DedupKey {
    /// The verifier's own id (the default): Stripe's event `id`, GitHub's
    /// `X-GitHub-Delivery`, Shopify's `X-Shopify-Event-Id`, …
    #[default]
    ProviderDefault,
    /// The single value of this header (matched case-insensitively); absent,
    /// repeated, empty or not text is [`IdentifyError::DedupKey`].
    Header(String),
    /// The string or integer at this JSON pointer (RFC 6901, e.g.
    /// `/data/id`) in the body; a number is taken as written. Absent, of
    /// another type, or empty is [`IdentifyError::DedupKey`]; a body that is
    /// not JSON is [`IdentifyError::InvalidJson`].
    JsonPointer(String),
    /// `sha256:` and the hex SHA-256 of the raw body: for providers with no
    /// id at all, whose retries resend the same bytes. Two different events
    /// with the same body are one event.
    BodyDigest,
    /// Several parts joined with `:` (a `%` or `:` inside a part is written
    /// `%25` or `%3A`, so two different lists of parts never give the same
    /// id).
    Composite(Vec<DedupKey>),
}

/// Why a [`DedupKey`] cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DedupKeyError {
    /// A header name is empty.
    #[error("a dedup key header name is empty")]
    EmptyHeader,
    /// A JSON pointer neither is empty nor starts with `/`.
    #[error("the JSON pointer `{0}` must start with `/` (RFC 6901)")]
    BadPointer(String),
    /// A composite key has no part.
    #[error("a composite dedup key needs at least one part")]
    EmptyComposite,
}

impl DedupKey {
    /// [`DedupKey::Header`].
    pub fn header(name: impl Into<String>) -> Self {
        DedupKey::Header(name.into())
    }

    /// [`DedupKey::JsonPointer`].
    pub fn json_pointer(pointer: impl Into<String>) -> Self {
        DedupKey::JsonPointer(pointer.into())
    }

    /// [`DedupKey::Composite`].
    pub fn composite(parts: impl IntoIterator<Item = DedupKey>) -> Self {
        DedupKey::Composite(parts.into_iter().collect())
    }

    /// Whether this is [`DedupKey::ProviderDefault`].
    pub fn is_provider_default(&self) -> bool {
        matches!(self, DedupKey::ProviderDefault)
    }

    /// Checks that the key can work (names and pointers well formed,
    /// composites not empty).
    ///
    /// # Errors
    /// The first [`DedupKeyError`] found.
    pub fn check(&self) -> Result<(), DedupKeyError> {
        match self {
            DedupKey::ProviderDefault | DedupKey::BodyDigest => Ok(()),
            DedupKey::Header(name) if name.trim().is_empty() => Err(DedupKeyError::EmptyHeader),
            DedupKey::Header(_) => Ok(()),
            DedupKey::JsonPointer(pointer) if !pointer.is_empty() && !pointer.starts_with('/') => {
                Err(DedupKeyError::BadPointer(pointer.clone()))
            }
            DedupKey::JsonPointer(_) => Ok(()),
            DedupKey::Composite(parts) if parts.is_empty() => Err(DedupKeyError::EmptyComposite),
            DedupKey::Composite(parts) => parts.iter().try_for_each(DedupKey::check),
        }
    }

    /// The id of a delivery: `provider_default` is the verifier's own id
    /// (`None` when it has none, which makes
    /// [`DedupKey::ProviderDefault`] an error).
    ///
    /// # Errors
    /// [`IdentifyError::DedupKey`] when a part is absent or unusable;
    /// [`IdentifyError::InvalidJson`] when a JSON pointer meets a body that is
    /// not JSON.
    pub fn derive(
        &self,
        provider_default: Option<&str>,
        body: &[u8],
        headers: &Headers,
    ) -> Result<String, IdentifyError> {
        let mut json = None;
        self.part(provider_default, body, headers, &mut json)
    }

    fn part(
        &self,
        provider_default: Option<&str>,
        body: &[u8],
        headers: &Headers,
        json: &mut Option<serde_json::Value>,
    ) -> Result<String, IdentifyError> {
        let absent = |what: String| IdentifyError::DedupKey(what);
        let id = match self {
            DedupKey::ProviderDefault => provider_default
                .map(str::to_owned)
                .ok_or_else(|| absent("the provider's own id (this verifier has none)".into()))?,
            DedupKey::Header(name) => {
                let mut values = headers.get_all(name);
                let (Some(value), None) = (values.next(), values.next()) else {
                    return Err(absent(format!("header `{name}` (absent or repeated)")));
                };
                as_text(value)
                    .map(str::to_owned)
                    .ok_or_else(|| absent(format!("header `{name}` (not text)")))?
            }
            DedupKey::JsonPointer(pointer) => {
                if json.is_none() {
                    let value = serde_json::from_slice(body)
                        .map_err(|err| IdentifyError::InvalidJson(err.to_string()))?;
                    *json = Some(value);
                }
                let value = json.as_ref().and_then(|json| json.pointer(pointer));
                match value {
                    Some(serde_json::Value::String(text)) => text.clone(),
                    Some(serde_json::Value::Number(number)) => number.to_string(),
                    _ => {
                        return Err(absent(format!(
                            "JSON `{pointer}` (absent, or not a string or number)"
                        )))
                    }
                }
            }
            DedupKey::BodyDigest => format!("sha256:{}", hex::encode(Sha256::digest(body))),
            DedupKey::Composite(parts) => {
                let mut id = String::new();
                for (i, part) in parts.iter().enumerate() {
                    if i > 0 {
                        id.push(':');
                    }
                    let text = part.part(provider_default, body, headers, json)?;
                    escape_into(&text, &mut id);
                }
                return Ok(id);
            }
        };
        if id.is_empty() {
            return Err(absent(format!("{self:?} (empty)")));
        }
        Ok(id)
    }
}

/// Appends `part` with `%` and `:` escaped, so parts never run together.
fn escape_into(part: &str, out: &mut String) {
    for c in part.chars() {
        match c {
            '%' => out.push_str("%25"),
            ':' => out.push_str("%3A"),
            c => out.push(c),
        }
    }
}

impl fmt::Debug for DedupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DedupKey::ProviderDefault => f.write_str("ProviderDefault"),
            DedupKey::Header(name) => write!(f, "Header({name:?})"),
            DedupKey::JsonPointer(pointer) => write!(f, "JsonPointer({pointer:?})"),
            DedupKey::BodyDigest => f.write_str("BodyDigest"),
            DedupKey::Composite(parts) => f.debug_tuple("Composite").field(parts).finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers() -> Headers {
        Headers::from_pairs([("X-Event-Id", "ev-1"), ("X-Twice", "a"), ("x-twice", "b")])
    }

    #[test]
    fn every_source_and_its_failures() {
        let h = headers();
        let body = br#"{"a":{"id":"obj_1","n":42,"f":1.5,"e":"","x":null}}"#;
        let derive = |key: DedupKey| key.derive(Some("default"), body, &h);
        assert_eq!(derive(DedupKey::ProviderDefault).unwrap(), "default");
        assert!(DedupKey::ProviderDefault.derive(None, body, &h).is_err());
        assert_eq!(derive(DedupKey::header("x-event-id")).unwrap(), "ev-1");
        assert!(matches!(
            derive(DedupKey::header("X-Twice")),
            Err(IdentifyError::DedupKey(_))
        ));
        assert!(matches!(
            derive(DedupKey::header("X-None")),
            Err(IdentifyError::DedupKey(_))
        ));
        assert_eq!(derive(DedupKey::json_pointer("/a/id")).unwrap(), "obj_1");
        assert_eq!(derive(DedupKey::json_pointer("/a/n")).unwrap(), "42");
        assert_eq!(derive(DedupKey::json_pointer("/a/f")).unwrap(), "1.5");
        for absent in ["/a/e", "/a/x", "/a", "/b", "/a/id/0"] {
            assert!(
                matches!(
                    derive(DedupKey::json_pointer(absent)),
                    Err(IdentifyError::DedupKey(_))
                ),
                "{absent}"
            );
        }
        let not_json = DedupKey::json_pointer("/a").derive(None, b"{", &h);
        assert!(matches!(not_json, Err(IdentifyError::InvalidJson(_))));
        let digest = derive(DedupKey::BodyDigest).unwrap();
        assert_eq!(
            digest,
            format!("sha256:{}", hex::encode(Sha256::digest(body)))
        );
    }

    #[test]
    fn composite_parts_never_run_together() {
        let h = Headers::from_pairs([("A", "x:y"), ("B", "z"), ("C", "x"), ("D", "y:z")]);
        let key =
            |a: &str, b: &str| DedupKey::composite([DedupKey::header(a), DedupKey::header(b)]);
        let one = key("A", "B").derive(None, b"", &h).unwrap();
        let two = key("C", "D").derive(None, b"", &h).unwrap();
        assert_eq!(one, "x%3Ay:z");
        assert_eq!(two, "x:y%3Az");
        assert_ne!(one, two);
        let percent = Headers::from_pairs([("A", "%3A"), ("B", ":")]);
        let (p, q) = (
            DedupKey::header("A").derive(None, b"", &percent).unwrap(),
            DedupKey::composite([DedupKey::header("B")])
                .derive(None, b"", &percent)
                .unwrap(),
        );
        assert_eq!(
            (p.as_str(), q.as_str()),
            ("%3A", "%3A"),
            "a single header is not escaped"
        );
        assert_eq!(
            DedupKey::composite([DedupKey::header("A")])
                .derive(None, b"", &percent)
                .unwrap(),
            "%253A"
        );
    }

    #[test]
    fn check_refuses_what_cannot_work() {
        assert_eq!(
            DedupKey::header(" ").check(),
            Err(DedupKeyError::EmptyHeader)
        );
        assert_eq!(
            DedupKey::json_pointer("data/id").check(),
            Err(DedupKeyError::BadPointer("data/id".into()))
        );
        assert_eq!(
            DedupKey::composite([]).check(),
            Err(DedupKeyError::EmptyComposite)
        );
        assert_eq!(
            DedupKey::composite([DedupKey::BodyDigest, DedupKey::composite([])]).check(),
            Err(DedupKeyError::EmptyComposite)
        );
        assert!(DedupKey::json_pointer("").check().is_ok());
        assert!(DedupKey::default().is_provider_default());
    }

    proptest::proptest! {
        #[test]
        fn any_body_and_headers_give_an_id_or_a_typed_error(
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
            value in "\\PC{0,12}",
            pointer in "(/[a-z0-9~]{0,3}){0,3}",
        ) {
            let h = Headers::from_pairs([("X-Id", value.as_bytes())]);
            let key = DedupKey::composite([
                DedupKey::header("x-id"),
                DedupKey::json_pointer(pointer),
                DedupKey::BodyDigest,
            ]);
            match key.derive(None, &body, &h) {
                Ok(id) => proptest::prop_assert!(!id.is_empty()),
                Err(IdentifyError::DedupKey(_) | IdentifyError::InvalidJson(_)) => {}
                Err(other) => proptest::prop_assert!(false, "{other:?}"),
            }
        }
    }
}
