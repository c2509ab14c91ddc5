//! A case-insensitive, read-only view of request headers.

use std::fmt;

/// Request headers as received, looked up case-insensitively.
///
/// Build it from `(name, value)` pairs taken from your HTTP layer (or from an
/// `http::HeaderMap` with the `http` feature). Values are kept as raw bytes, in
/// the order received; a header sent more than once keeps every value, and
/// each verifier decides on purpose what a repeated header means
/// ([`Headers::get`] rejects it, [`Headers::get_all`] sees every value).
///
/// ```
/// use hookgate::Headers;
/// let headers = Headers::from_pairs([("X-GitHub-Event", "push"), ("x-github-delivery", "abc")]);
/// assert_eq!(headers.get("x-github-event"), Ok(Some("push")));
/// assert_eq!(headers.get("X-GITHUB-DELIVERY"), Ok(Some("abc")));
/// assert_eq!(headers.get("missing"), Ok(None));
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Vec<(Box<str>, Box<[u8]>)>,
    /// The request's method and target, when the HTTP layer handed them over.
    request: Option<Box<RequestLine>>,
}

/// A request's method and request target, as received.
#[derive(Clone, PartialEq, Eq)]
struct RequestLine {
    method: Box<str>,
    target: Box<str>,
}

/// Why a header could not be read as a single text value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// The header was sent more than once where exactly one value is meaningful.
    #[error("header `{0}` was sent more than once")]
    Repeated(HeaderName),
    /// The header's value is not valid UTF-8 (or contains control characters).
    #[error("header `{0}` is not valid text")]
    NotText(HeaderName),
}

/// The name of a header, as the caller asked for it (kept for error messages).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HeaderName(&'static str);

impl HeaderName {
    /// The name as a string.
    pub fn as_str(&self) -> &'static str {
        self.0
    }
}

impl fmt::Debug for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0, f)
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl Headers {
    /// An empty set of headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds headers from `(name, value)` pairs, keeping repeated names.
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<[u8]>,
    {
        let mut headers = Self::new();
        for (name, value) in pairs {
            headers.append(name, value);
        }
        headers
    }

    /// Adds one header value (an existing value of the same name is kept).
    pub fn append(&mut self, name: impl AsRef<str>, value: impl AsRef<[u8]>) {
        self.entries
            .push((name.as_ref().into(), value.as_ref().to_vec().into()));
    }

    /// Number of header values held (a repeated header counts once per value).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no header is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether at least one header of this name is present.
    pub fn contains(&self, name: &str) -> bool {
        self.entries
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    /// Every raw value of the header, in the order received.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.entries
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| &**v)
    }

    /// The single raw value of the header: `Ok(None)` when absent, an error when it
    /// was sent more than once.
    pub fn get_bytes(&self, name: &'static str) -> Result<Option<&[u8]>, HeaderError> {
        let mut values = self.get_all(name);
        let first = values.next();
        if values.next().is_some() {
            return Err(HeaderError::Repeated(HeaderName(name)));
        }
        Ok(first)
    }

    /// The single text value of the header: `Ok(None)` when absent, an error when it
    /// was sent more than once or is not printable text (UTF-8 without control
    /// characters other than horizontal tab).
    pub fn get(&self, name: &'static str) -> Result<Option<&str>, HeaderError> {
        text_of(self.get_bytes(name)?, name)
    }

    /// Adds the request's method and request target (the path and query as
    /// received, e.g. `/webhooks/twilio?To=%2B1555`, or the absolute URL a
    /// client sent in absolute form): verifiers that sign over the URL (such
    /// as Twilio's) read them; the others ignore them. The `http` and `axum`
    /// integrations fill them in; with your own HTTP layer, hand them over
    /// exactly as received, without decoding.
    ///
    /// ```
    /// use hookgate::Headers;
    /// let headers = Headers::from_pairs([("Host", "example.com")])
    ///     .with_request("POST", "/hooks?a=1%202");
    /// assert_eq!(headers.method(), Some("POST"));
    /// assert_eq!(headers.request_target(), Some("/hooks?a=1%202"));
    /// ```
    #[must_use]
    pub fn with_request(mut self, method: &str, target: &str) -> Self {
        self.request = Some(Box::new(RequestLine {
            method: method.into(),
            target: target.into(),
        }));
        self
    }

    /// The request's method, when it was handed over ([`Headers::with_request`]).
    pub fn method(&self) -> Option<&str> {
        self.request.as_deref().map(|r| &*r.method)
    }

    /// The request target (path and query as received), when it was handed
    /// over ([`Headers::with_request`]).
    pub fn request_target(&self) -> Option<&str> {
        self.request.as_deref().map(|r| &*r.target)
    }

    /// Iterates over `(name, raw value)` pairs in the order received.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.entries.iter().map(|(n, v)| (&**n, &**v))
    }
}

/// What one pass over the headers found of one name; see
/// [`Headers::find_each`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Found<'h> {
    /// Its first value.
    pub(crate) first: Option<&'h [u8]>,
    /// Whether it was sent more than once.
    pub(crate) repeated: bool,
    /// Whether any of its values is not empty.
    pub(crate) any_non_empty: bool,
}

impl<'h> Found<'h> {
    /// What [`Headers::get_bytes`] answers for `name`.
    pub(crate) fn single(&self, name: &'static str) -> Result<Option<&'h [u8]>, HeaderError> {
        if self.repeated {
            return Err(HeaderError::Repeated(HeaderName(name)));
        }
        Ok(self.first)
    }

    /// What [`Headers::get`] answers for `name`.
    pub(crate) fn text(&self, name: &'static str) -> Result<Option<&'h str>, HeaderError> {
        text_of(self.single(name)?, name)
    }
}

/// A single header value as text: [`HeaderError::NotText`] when it is not.
fn text_of<'h>(
    value: Option<&'h [u8]>,
    name: &'static str,
) -> Result<Option<&'h str>, HeaderError> {
    value
        .map(|bytes| as_text(bytes).ok_or(HeaderError::NotText(HeaderName(name))))
        .transpose()
}

impl Headers {
    /// What each of `names` has, in one pass over the headers instead of
    /// one [`get_all`](Self::get_all) each (case does not matter; the names
    /// must differ from one another ignoring case).
    pub(crate) fn find_each<const N: usize>(&self, names: [&str; N]) -> [Found<'_>; N] {
        let mut found = [Found::default(); N];
        for (name, value) in &self.entries {
            if let Some(seen) = names
                .iter()
                .zip(&mut found)
                .find_map(|(wanted, seen)| name.eq_ignore_ascii_case(wanted).then_some(seen))
            {
                seen.repeated |= seen.first.is_some();
                seen.first.get_or_insert(value);
                seen.any_non_empty |= !value.is_empty();
            }
        }
        found
    }
}

/// The value as text when it is UTF-8 without control characters (tab allowed).
pub(crate) fn as_text(bytes: &[u8]) -> Option<&str> {
    // The printable ASCII that senders' values are is valid UTF-8 without
    // control characters: one loop over the bytes, where the rule below
    // decodes characters one by one.
    if bytes.iter().all(|&b| matches!(b, b' '..=b'~' | b'\t')) {
        return std::str::from_utf8(bytes).ok();
    }
    as_text_by_characters(bytes)
}

/// [`as_text`] by its rule, character by character.
fn as_text_by_characters(bytes: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(bytes).ok()?;
    if text.chars().any(|c| c.is_control() && c != '\t') {
        return None;
    }
    Some(text)
}

impl fmt::Debug for Headers {
    /// Lists header names only: values may carry signatures or credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("Headers");
        debug.field(
            "names",
            &self.entries.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        );
        if let Some(request) = &self.request {
            // The path without its query, which may carry tokens.
            let path = request.target.split('?').next().unwrap_or_default();
            debug.field("method", &request.method).field("path", &path);
        }
        debug.finish()
    }
}

impl<K: AsRef<str>, V: AsRef<[u8]>> FromIterator<(K, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self::from_pairs(iter)
    }
}

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
impl From<&http::HeaderMap> for Headers {
    /// Copies every value, repeated ones included, in the map's order.
    fn from(map: &http::HeaderMap) -> Self {
        let mut headers = Headers {
            entries: Vec::with_capacity(map.len()),
            request: None,
        };
        for (name, value) in map {
            headers.append(name.as_str(), value.as_bytes());
        }
        headers
    }
}

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
impl From<&http::request::Parts> for Headers {
    /// Every header value (as `From<&http::HeaderMap>`), the method and the
    /// request target ([`Headers::with_request`]).
    fn from(parts: &http::request::Parts) -> Self {
        let uri = &parts.uri;
        let target = match uri.path_and_query() {
            Some(target) if uri.scheme().is_none() => target.as_str().to_owned(),
            _ => uri.to_string(),
        };
        Headers::from(&parts.headers).with_request(parts.method.as_str(), &target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_headers_are_an_error_for_single_lookups() {
        let h = Headers::from_pairs([("A", "1"), ("a", "2"), ("B", "3")]);
        assert_eq!(h.get("a"), Err(HeaderError::Repeated(HeaderName("a"))));
        assert_eq!(h.get_all("A").collect::<Vec<_>>(), vec![&b"1"[..], b"2"]);
        assert_eq!(h.get("b"), Ok(Some("3")));
        assert_eq!(h.len(), 3);
    }

    #[test]
    fn non_text_values_are_rejected() {
        let h = Headers::from_pairs([("a", &b"\xff"[..]), ("b", b"x\ny"), ("c", b"x\ty")]);
        assert_eq!(h.get("a"), Err(HeaderError::NotText(HeaderName("a"))));
        assert_eq!(h.get("b"), Err(HeaderError::NotText(HeaderName("b"))));
        assert_eq!(h.get("c"), Ok(Some("x\ty")));
        assert_eq!(h.get_bytes("a"), Ok(Some(&b"\xff"[..])));
    }

    proptest::proptest! {
        #[test]
        fn one_pass_finds_what_each_lookup_finds(
            pairs in proptest::collection::vec(
                (
                    proptest::sample::select(vec!["X-Sig", "x-sig", "X-SIG", "Sig", "x-si", "Host", "x-sig2"]),
                    proptest::sample::select(vec!["", "a", "b", "\u{7}", "\t"]),
                ),
                0..8,
            )
        ) {
            let headers = Headers::from_pairs(pairs);
            let names = ["x-sig", "SIG", "host"];
            for (found, name) in headers.find_each(names).iter().zip(names) {
                let all: Vec<&[u8]> = headers.get_all(name).collect();
                proptest::prop_assert_eq!(found.first, all.first().copied());
                proptest::prop_assert_eq!(found.repeated, all.len() > 1);
                proptest::prop_assert_eq!(found.any_non_empty, all.iter().any(|v| !v.is_empty()));
                proptest::prop_assert_eq!(
                    found.single(name).map_err(|e| e.to_string()),
                    headers.get_bytes(name).map_err(|e| e.to_string())
                );
                let by_walk = match headers.get_bytes(name) {
                    Ok(Some(bytes)) => as_text(bytes).map(Some).ok_or(HeaderError::NotText(HeaderName(name))),
                    Ok(None) => Ok(None),
                    Err(e) => Err(e),
                };
                proptest::prop_assert_eq!(found.text(name), by_walk);
            }
        }
    }

    #[test]
    fn text_is_read_by_the_rule_whatever_the_bytes() {
        let mut samples: Vec<Vec<u8>> = (0..=u8::MAX).map(|b| vec![b'a', b, b'z']).collect();
        samples.push("Zoë ☕".as_bytes().to_vec());
        samples.push("a\u{85}b".as_bytes().to_vec());
        samples.push(b"v1,abc\t".to_vec());
        samples.push(b"\xff".to_vec());
        samples.push(Vec::new());
        for bytes in samples {
            assert_eq!(as_text(&bytes), as_text_by_characters(&bytes), "{bytes:?}");
        }
    }

    #[test]
    fn debug_shows_names_not_values() {
        let h = Headers::from_pairs([("Stripe-Signature", "t=1,v1=deadbeef")]);
        let printed = format!("{h:?}");
        assert!(printed.contains("Stripe-Signature"));
        assert!(!printed.contains("deadbeef"));
    }
}
