//! [`JournalHeaders`]: the allowlisted headers of a journaled delivery, in one
//! string.

use std::fmt;

use smallvec::SmallVec;

/// Header ends held inline: eight headers, a name and a value each, before
/// the ends spill to the heap (the profiles keep at most a dozen headers, and
/// a delivery carries far fewer of them).
const INLINE_ENDS: usize = 16;

/// Where each header name and value ends in a [`JournalHeaders`]' text.
pub(crate) type HeaderEnds = SmallVec<[u32; INLINE_ENDS]>;

/// The allowlisted headers of a verified delivery, in the order received,
/// their names and values one after the other in one string.
///
/// A journal keeps thousands of these; holding each name and value in an
/// allocation of its own cost a dozen allocations per delivery when it was
/// recorded, and as many cold frees when it was evicted. Here a record's
/// headers are one allocation, whatever their number.
///
/// ```
/// use hookgate::journal::JournalHeaders;
/// let mut headers = JournalHeaders::new();
/// headers.push("X-GitHub-Event", "issues");
/// headers.push("Content-Type", "application/json");
/// assert_eq!(headers.len(), 2);
/// assert_eq!(headers.get("x-github-event"), Some("issues"));
/// let pairs: Vec<(&str, &str)> = headers.iter().collect();
/// assert_eq!(pairs, [("X-GitHub-Event", "issues"), ("Content-Type", "application/json")]);
/// let same: JournalHeaders = [("X-GitHub-Event", "issues"), ("Content-Type", "application/json")]
///     .into_iter()
///     .collect();
/// assert_eq!(same, headers);
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct JournalHeaders {
    /// Each header's name, then its value, one header after the other.
    text: String,
    /// Where each name and each value ends in `text`: two ends per header.
    ends: HeaderEnds,
}

impl JournalHeaders {
    /// No headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// No headers yet, with room for `bytes` bytes of names and values.
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            text: String::with_capacity(bytes),
            ends: SmallVec::new(),
        }
    }

    /// Adds a header after the others. A header that would take the names
    /// and values past 4 GiB in all is left out (no delivery's headers come
    /// near that: servers refuse headers over a few KiB).
    pub fn push(&mut self, name: &str, value: &str) {
        let Some(end) = header_end(self.text.len(), name.len(), value.len()) else {
            return;
        };
        self.text.push_str(name);
        // Within `end`, so within u32 too.
        self.ends.push(self.text.len() as u32);
        self.text.push_str(value);
        self.ends.push(end);
    }

    /// How many headers it holds.
    pub fn len(&self) -> usize {
        self.ends.len() / 2
    }

    /// Whether it holds no header.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The value of the first header named `name` (case does not matter).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    }

    /// The headers as `(name, value)` pairs, in the order received.
    pub fn iter(&self) -> JournalHeadersIter<'_> {
        JournalHeadersIter {
            text: &self.text,
            ends: self.ends.chunks_exact(2),
            start: 0,
        }
    }

    /// The headers received, their values as text (invalid UTF-8 replaced),
    /// with `spare` bytes of room after them. Their text is checked as UTF-8
    /// in one pass (header values nearly always are), not value by value.
    /// For the pipeline's journaling, which needs the runtime.
    #[cfg(feature = "tokio")]
    pub(crate) fn from_received(headers: &[(&str, &[u8])], spare: usize) -> Self {
        let bytes: usize = headers.iter().map(|(n, v)| n.len() + v.len()).sum();
        let mut text = Vec::with_capacity(bytes.saturating_add(spare));
        let mut ends = HeaderEnds::new();
        for &(name, value) in headers {
            let Some(end) = header_end(text.len(), name.len(), value.len()) else {
                break;
            };
            text.extend_from_slice(name.as_bytes());
            // Within `end`, so within u32 too.
            ends.push(text.len() as u32);
            text.extend_from_slice(value);
            ends.push(end);
        }
        match String::from_utf8(text) {
            Ok(text) => Self { text, ends },
            // Some value is not UTF-8: each value on its own, replaced.
            Err(_) => {
                let mut lossy = Self::with_capacity(bytes);
                for &(name, value) in headers {
                    lossy.push(name, &String::from_utf8_lossy(value));
                }
                lossy.text.reserve(spare);
                lossy
            }
        }
    }

    /// Its text and ends, for a journal that appends its own strings to the
    /// text (in its spare capacity, when the pipeline left room for them).
    pub(crate) fn into_parts(self) -> (String, HeaderEnds) {
        (self.text, self.ends)
    }

    /// The headers as owned pairs.
    pub fn to_vec(&self) -> Vec<(String, String)> {
        self.iter()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect()
    }
}

/// Where a header of a `name`-byte name and a `value`-byte value ends when
/// added after `len` bytes of text; `None` past 4 GiB in all (the ends are
/// `u32`).
fn header_end(len: usize, name: usize, value: usize) -> Option<u32> {
    len.checked_add(name)
        .and_then(|n| n.checked_add(value))
        .and_then(|n| u32::try_from(n).ok())
}

/// The headers of a [`JournalHeaders`], in order; see
/// [`JournalHeaders::iter`].
#[derive(Clone)]
pub struct JournalHeadersIter<'a> {
    text: &'a str,
    ends: std::slice::ChunksExact<'a, u32>,
    /// Where the next header's name starts.
    start: usize,
}

impl<'a> Iterator for JournalHeadersIter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        let ends = self.ends.next()?;
        let (name_end, value_end) = (ends[0] as usize, ends[1] as usize);
        // The ends are those of whole strings pushed: char boundaries, in
        // order, within the text. `get` keeps even a broken invariant from
        // panicking.
        let name = self.text.get(self.start..name_end).unwrap_or_default();
        let value = self.text.get(name_end..value_end).unwrap_or_default();
        self.start = value_end;
        Some((name, value))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.ends.size_hint()
    }
}

impl ExactSizeIterator for JournalHeadersIter<'_> {}

impl fmt::Debug for JournalHeadersIter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.clone()).finish()
    }
}

impl<'a> IntoIterator for &'a JournalHeaders {
    type Item = (&'a str, &'a str);
    type IntoIter = JournalHeadersIter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<N: AsRef<str>, V: AsRef<str>> Extend<(N, V)> for JournalHeaders {
    fn extend<I: IntoIterator<Item = (N, V)>>(&mut self, headers: I) {
        for (name, value) in headers {
            self.push(name.as_ref(), value.as_ref());
        }
    }
}

impl<N: AsRef<str>, V: AsRef<str>> FromIterator<(N, V)> for JournalHeaders {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(headers: I) -> Self {
        let mut all = Self::new();
        all.extend(headers);
        all
    }
}

impl From<Vec<(String, String)>> for JournalHeaders {
    fn from(headers: Vec<(String, String)>) -> Self {
        headers.into_iter().collect()
    }
}

impl fmt::Debug for JournalHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// A JSON array of `[name, value]` pairs, as the SQL journals store it.
impl serde::Serialize for JournalHeaders {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> serde::Deserialize<'de> for JournalHeaders {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let pairs: Vec<(std::borrow::Cow<'de, str>, std::borrow::Cow<'de, str>)> =
            serde::Deserialize::deserialize(deserializer)?;
        Ok(pairs.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn empty_names_and_values_and_many_headers_come_back() {
        let pairs = vec![
            (String::new(), String::new()),
            ("X-Émoji".to_owned(), "🦀".to_owned()),
            ("a".to_owned(), String::new()),
            (String::new(), "b".to_owned()),
        ];
        let headers = JournalHeaders::from(pairs.clone());
        assert_eq!(headers.to_vec(), pairs);
        assert_eq!(headers.len(), 4);
        assert_eq!(headers.get("x-émoji"), None, "ASCII case only");
        assert_eq!(headers.get("X-Émoji"), Some("🦀"));
        assert_eq!(headers.get("missing"), None);
        assert!(JournalHeaders::new().is_empty());
        assert_eq!(JournalHeaders::new().iter().next(), None);

        // Past the inline ends.
        let many: Vec<(String, String)> =
            (0..40).map(|i| (format!("h{i}"), "v".repeat(i))).collect();
        let headers: JournalHeaders = many.iter().cloned().collect();
        assert_eq!(headers.to_vec(), many);
        assert_eq!(headers.iter().len(), 40);
    }

    #[test]
    fn debug_and_json_show_the_pairs() {
        let headers: JournalHeaders = [("A", "1"), ("B", "2")].into_iter().collect();
        assert_eq!(format!("{headers:?}"), r#"[("A", "1"), ("B", "2")]"#);
        let json = serde_json::to_string(&headers).unwrap();
        assert_eq!(json, r#"[["A","1"],["B","2"]]"#);
        let back: JournalHeaders = serde_json::from_str(&json).unwrap();
        assert_eq!(back, headers);
        let escaped: JournalHeaders = serde_json::from_str(r#"[["A\"","\u00e9"]]"#).unwrap();
        assert_eq!(escaped.get("A\""), Some("é"));
        assert!(serde_json::from_str::<JournalHeaders>(r#"[["A"]]"#).is_err());
        assert!(serde_json::from_str::<JournalHeaders>(r#"{"A":"1"}"#).is_err());
    }

    proptest! {
        /// Whatever strings go in come back, in order, and equal lists are
        /// equal headers.
        #[test]
        fn pairs_round_trip(pairs in proptest::collection::vec((".{0,12}", ".{0,40}"), 0..24)) {
            let headers: JournalHeaders = pairs.iter().cloned().collect();
            prop_assert_eq!(headers.len(), pairs.len());
            prop_assert_eq!(headers.to_vec(), pairs.clone());
            let json = serde_json::to_string(&headers).unwrap();
            let as_vec: Vec<(String, String)> = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(&as_vec, &pairs);
            prop_assert_eq!(serde_json::from_str::<JournalHeaders>(&json).unwrap(), headers.clone());
            let mut rebuilt = JournalHeaders::with_capacity(3);
            rebuilt.extend(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())));
            prop_assert_eq!(rebuilt, headers);
        }

        /// Received headers (values any bytes) come back as pushing each
        /// value as text, invalid UTF-8 replaced, would give, with the room
        /// asked for.
        #[cfg(feature = "tokio")]
        #[test]
        fn received_headers_are_their_text(
            pairs in proptest::collection::vec(
                (".{0,12}", proptest::collection::vec(any::<u8>(), 0..40)),
                0..24,
            ),
            utf8 in proptest::collection::vec(".{0,40}", 0..4),
            spare in 0usize..300,
        ) {
            let mut received: Vec<(&str, &[u8])> =
                pairs.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect();
            received.extend(utf8.iter().map(|v| ("valid", v.as_bytes())));
            let headers = JournalHeaders::from_received(&received, spare);
            let mut pushed = JournalHeaders::new();
            for (name, value) in &received {
                pushed.push(name, &String::from_utf8_lossy(value));
            }
            prop_assert!(headers.text.capacity() - headers.text.len() >= spare);
            prop_assert_eq!(headers, pushed);
        }
    }

    #[cfg(feature = "tokio")]
    #[test]
    fn received_headers_that_are_not_utf8_are_replaced_value_by_value() {
        let received: [(&str, &[u8]); 3] = [
            ("X-Ok", b"plain"),
            ("X-Bad", b"caf\xe9"),
            ("X-Emoji", "🦀".as_bytes()),
        ];
        let headers = JournalHeaders::from_received(&received, 16);
        assert_eq!(
            headers.iter().collect::<Vec<_>>(),
            [
                ("X-Ok", "plain"),
                ("X-Bad", "caf\u{fffd}"),
                ("X-Emoji", "🦀")
            ]
        );
        assert!(JournalHeaders::from_received(&[], 0).is_empty());
    }
}
