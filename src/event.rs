//! A verified delivery, as handlers see it.

use std::fmt;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;

use crate::verify::Identity;

/// A verified, identified delivery.
///
/// The raw body is shared, never copied: cloning an `Event` clones one `Arc`.
/// [`Event::json`] parses the body at most once and caches the result for every
/// clone; [`Event::parse`] deserialises straight from the raw bytes into your type.
///
/// ```
/// use hookgate::{Event, Identity};
/// let event = Event::new(
///     "stripe",
///     Identity::new("evt_1", "checkout.session.completed"),
///     &br#"{"id":"evt_1","data":{"object":{"amount_total":4900}}}"#[..],
/// );
/// assert_eq!(event.key(), "stripe:evt_1");
/// assert_eq!(event.json()?["data"]["object"]["amount_total"], 4900);
///
/// #[derive(serde::Deserialize)]
/// struct Envelope { id: String }
/// assert_eq!(event.parse::<Envelope>()?.id, "evt_1");
/// # Ok::<(), hookgate::PayloadError>(())
/// ```
#[derive(Clone)]
pub struct Event {
    inner: Arc<Inner>,
}

struct Inner {
    provider: Arc<str>,
    identity: Identity,
    body: Bytes,
    json: OnceLock<Result<serde_json::Value, PayloadError>>,
}

/// Why an event's body could not be read as the requested JSON.
///
/// A payload error will not go away on a retry: it converts into
/// [`HandlerError::Permanent`](crate::HandlerError::Permanent) with `?`.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// The body is not valid JSON.
    #[error("the event body is not valid JSON: {0}")]
    NotJson(#[source] Arc<serde_json::Error>),
    /// The body is JSON but does not have the shape of the requested type.
    #[error("the event body does not match the expected type: {0}")]
    UnexpectedShape(#[source] Arc<serde_json::Error>),
}

impl PayloadError {
    fn from_serde(err: serde_json::Error) -> Self {
        if err.is_data() {
            PayloadError::UnexpectedShape(Arc::new(err))
        } else {
            PayloadError::NotJson(Arc::new(err))
        }
    }
}

impl Event {
    /// The identity, taken out when this is the event's last handle; the
    /// event itself otherwise.
    #[cfg(feature = "tokio")]
    pub(crate) fn into_identity(self) -> Result<Identity, Event> {
        Arc::try_unwrap(self.inner)
            .map(|inner| inner.identity)
            .map_err(|inner| Event { inner })
    }

    /// An event from a provider name, the identity its verifier found, and the raw
    /// body. The pipeline builds events for you; this constructor lets you test
    /// your handlers directly.
    pub fn new(provider: impl Into<Arc<str>>, identity: Identity, body: impl Into<Bytes>) -> Self {
        Self {
            inner: Arc::new(Inner {
                provider: provider.into(),
                identity,
                body: body.into(),
                json: OnceLock::new(),
            }),
        }
    }

    /// The provider's short name (`"stripe"`, `"github"`, `"shopify"`).
    pub fn provider(&self) -> &str {
        &self.inner.provider
    }

    /// The deduplication id, stable across the provider's retries of this event.
    pub fn id(&self) -> &str {
        &self.inner.identity.id
    }

    /// The event kind used for routing (`checkout.session.completed`,
    /// `issues.opened`, `orders/create`).
    pub fn kind(&self) -> &str {
        &self.inner.identity.kind
    }

    /// When the provider says the event happened, where it says so.
    pub fn occurred_at(&self) -> Option<OffsetDateTime> {
        self.inner.identity.occurred_at
    }

    /// The first metadata value of that name (e.g. Shopify's `event_id`).
    pub fn metadata(&self, name: &str) -> Option<&str> {
        self.inner.identity.metadata(name)
    }

    /// Everything the verifier learnt about the event.
    pub fn identity(&self) -> &Identity {
        &self.inner.identity
    }

    /// The idempotency key of the event: `provider:id`.
    pub fn key(&self) -> String {
        idempotency_key(self.provider(), self.id())
    }

    /// The raw body, exactly as received and verified.
    pub fn body(&self) -> &Bytes {
        &self.inner.body
    }

    /// The body as a JSON document, parsed on first call and cached for every
    /// clone of this event.
    pub fn json(&self) -> Result<&serde_json::Value, PayloadError> {
        self.inner
            .json
            .get_or_init(|| {
                serde_json::from_slice(&self.inner.body).map_err(PayloadError::from_serde)
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The body deserialised into `T`, straight from the raw bytes.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, PayloadError> {
        serde_json::from_slice(&self.inner.body).map_err(PayloadError::from_serde)
    }
}

/// The idempotency key of an event: `provider:id`.
pub(crate) fn idempotency_key(provider: &str, id: &str) -> String {
    let mut key = String::with_capacity(provider.len() + 1 + id.len());
    key.push_str(provider);
    key.push(':');
    key.push_str(id);
    key
}

impl fmt::Debug for Event {
    /// Shows the identity and the body's length, never the body: payloads carry
    /// customer data.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("provider", &self.provider())
            .field("id", &self.id())
            .field("kind", &self.kind())
            .field("occurred_at", &self.occurred_at())
            .field("body_len", &self.inner.body.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(body: &'static [u8]) -> Event {
        Event::new("github", Identity::new("d-1", "issues.opened"), body)
    }

    #[test]
    fn json_is_parsed_once_and_shared_by_clones() {
        let a = event(br#"{"action":"opened"}"#);
        let b = a.clone();
        let first = a.json().unwrap() as *const serde_json::Value;
        let second = b.json().unwrap() as *const serde_json::Value;
        assert_eq!(first, second);
        assert_eq!(b.json().unwrap()["action"], "opened");
    }

    #[test]
    fn body_is_shared_not_copied() {
        let body = Bytes::from_static(b"{}");
        let e = Event::new("github", Identity::new("d", "push"), body.clone());
        assert_eq!(e.body().as_ptr(), body.as_ptr());
        assert_eq!(e.clone().body().as_ptr(), body.as_ptr());
    }

    #[test]
    fn bad_json_and_wrong_shape_are_distinct_errors() {
        assert!(matches!(
            event(b"{not json").json(),
            Err(PayloadError::NotJson(_))
        ));
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Needs {
            number: u64,
        }
        assert!(matches!(
            event(br#"{"number":"x"}"#).parse::<Needs>(),
            Err(PayloadError::UnexpectedShape(_))
        ));
        assert!(matches!(
            event(b"[").parse::<Needs>(),
            Err(PayloadError::NotJson(_))
        ));
    }

    #[test]
    fn debug_hides_the_body() {
        let printed = format!("{:?}", event(br#"{"email":"a@example.com"}"#));
        assert!(printed.contains("issues.opened"));
        assert!(!printed.contains("example.com"));
    }
}
