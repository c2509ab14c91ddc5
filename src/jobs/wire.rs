//! The wire encoding of a [`JobMessage`]: a versioned frame, a JSON header and
//! the raw body after it, untouched.
//!
//! ```text
//! offset  size  content
//! 0       3     magic "HGJ"
//! 3       1     version (WIRE_VERSION)
//! 4       4     header length n, big-endian u32 (at most MAX_HEADER_LEN)
//! 8       n     header: JSON object (handler, provider, id, kind, occurred_at,
//!               metadata, attempt, enqueued_at, body_len)
//! 8 + n   rest  the event's raw body, exactly body_len bytes
//! ```
//!
//! Times are `[unix_seconds, nanoseconds, utc_offset_seconds]`, so they come
//! back with their offset. The body is never re-encoded: what the verifier
//! checked is what the worker's handler reads.

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use time::{OffsetDateTime, UtcOffset};

use super::message::JobMessage;
use super::names::{self, InternError};
use crate::verify::Identity;

/// The version of the wire encoding [`JobMessage::encode`] writes and
/// [`JobMessage::decode`] reads. A decoder refuses other versions with
/// [`DecodeError::UnsupportedVersion`] rather than guess.
pub const WIRE_VERSION: u8 = 1;

/// The largest JSON header a decoder accepts, in bytes (1 MiB).
pub const MAX_HEADER_LEN: usize = 1024 * 1024;

const MAGIC: &[u8; 3] = b"HGJ";
const PREFIX_LEN: usize = 8;

/// Why bytes could not be read as a [`JobMessage`]. Hostile or damaged bytes
/// always end here, never in a panic.
///
/// ```
/// use hookgate::jobs::{DecodeError, JobMessage};
/// assert!(matches!(JobMessage::decode(b"{\"id\":1}"), Err(DecodeError::NotAJob)));
/// assert!(matches!(JobMessage::decode(b"HGJ"), Err(DecodeError::TooShort { len: 3 })));
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Fewer bytes than the 8-byte frame prefix.
    #[error("a job message needs at least 8 bytes, got {len}: the message was cut short")]
    TooShort {
        /// Bytes received.
        len: usize,
    },
    /// The bytes do not start with hookgate's `HGJ` magic: not a job message
    /// (another producer on the subject or queue?).
    #[error("not a hookgate job message (no `HGJ` magic): is another producer writing to this subject or queue?")]
    NotAJob,
    /// A wire version this build does not read.
    #[error("job message wire version {found} is not supported (this build reads version {supported}): upgrade the workers before the producers")]
    UnsupportedVersion {
        /// The version in the message.
        found: u8,
        /// The version this build reads.
        supported: u8,
    },
    /// The declared header is longer than [`MAX_HEADER_LEN`].
    #[error("job message header of {len} bytes is over the limit of {max}")]
    HeaderTooLarge {
        /// Declared length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The message ends inside its header.
    #[error("job message header declares {declared} bytes but only {available} follow: the message was cut short")]
    HeaderTruncated {
        /// Declared header length.
        declared: usize,
        /// Bytes after the prefix.
        available: usize,
    },
    /// The header is not the expected JSON object.
    #[error("job message header is not valid: {0}")]
    InvalidHeader(#[source] Arc<serde_json::Error>),
    /// The body is not as long as the header says.
    #[error("job message body is {actual} bytes, the header declares {declared}: the message was cut short or padded")]
    BodyLength {
        /// Length declared in the header.
        declared: u64,
        /// Bytes that follow the header.
        actual: u64,
    },
    /// A field that must not be empty is empty.
    #[error("job message field `{0}` is empty")]
    EmptyField(&'static str),
    /// The attempt number is 0 (attempts count from 1).
    #[error("job message attempt is 0; attempts count from 1")]
    ZeroAttempt,
    /// A timestamp is out of range (seconds, nanoseconds or UTC offset).
    #[error("job message field `{0}` is not a valid timestamp")]
    InvalidTimestamp(&'static str),
    /// A metadata name is longer than 128 bytes.
    #[error("job message metadata name is longer than 128 bytes")]
    MetadataNameTooLong,
    /// The process already holds 1024 distinct metadata names read from
    /// messages (names are kept for the life of the process, so their number
    /// is bounded).
    #[error("job message metadata name refused: this process already holds 1024 distinct names read from messages")]
    TooManyMetadataNames,
}

/// `[unix_seconds, nanoseconds, utc_offset_seconds]`.
type Stamp = (i64, u32, i32);

#[derive(Serialize)]
struct HeaderOut<'a> {
    handler: &'a str,
    provider: &'a str,
    id: &'a str,
    kind: &'a str,
    occurred_at: Option<Stamp>,
    metadata: Vec<(&'a str, &'a str)>,
    attempt: u32,
    enqueued_at: Stamp,
    body_len: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderIn {
    handler: String,
    provider: String,
    id: String,
    kind: String,
    occurred_at: Option<Stamp>,
    metadata: Vec<(String, String)>,
    attempt: u32,
    enqueued_at: Stamp,
    body_len: u64,
}

fn stamp(at: OffsetDateTime) -> Stamp {
    (
        at.unix_timestamp(),
        at.nanosecond(),
        at.offset().whole_seconds(),
    )
}

fn unstamp(
    (secs, nanos, offset): Stamp,
    field: &'static str,
) -> Result<OffsetDateTime, DecodeError> {
    let invalid = || DecodeError::InvalidTimestamp(field);
    let offset = UtcOffset::from_whole_seconds(offset).map_err(|_| invalid())?;
    OffsetDateTime::from_unix_timestamp(secs)
        .map_err(|_| invalid())?
        .replace_nanosecond(nanos)
        .map_err(|_| invalid())?
        .checked_to_offset(offset)
        .ok_or_else(invalid)
}

impl JobMessage {
    /// The message in the wire encoding (version [`WIRE_VERSION`]): a frame
    /// prefix, a JSON header, then the body's bytes as they are.
    pub fn encode(&self) -> Vec<u8> {
        let identity = &self.identity;
        let header = HeaderOut {
            handler: &self.handler,
            provider: &self.provider,
            id: &identity.id,
            kind: &identity.kind,
            occurred_at: identity.occurred_at.map(stamp),
            metadata: identity
                .metadata
                .iter()
                .map(|(name, value)| (*name, value.as_str()))
                .collect(),
            attempt: self.attempt,
            enqueued_at: stamp(self.enqueued_at),
            body_len: self.body.len() as u64,
        };
        // Serialising strings, integers and tuples into a Vec cannot fail.
        let header = serde_json::to_vec(&header).unwrap_or_default();
        let mut wire = Vec::with_capacity(PREFIX_LEN + header.len() + self.body.len());
        wire.extend_from_slice(MAGIC);
        wire.push(WIRE_VERSION);
        // A header over 4 GiB would need over a billion metadata entries.
        wire.extend_from_slice(
            &u32::try_from(header.len())
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        );
        wire.extend_from_slice(&header);
        wire.extend_from_slice(&self.body);
        wire
    }

    /// Reads a message written by [`JobMessage::encode`]; the body is copied
    /// out of `wire`. See [`JobMessage::decode_bytes`] to share it instead.
    ///
    /// # Errors
    /// A [`DecodeError`] naming what is wrong; never panics, whatever the bytes.
    pub fn decode(wire: &[u8]) -> Result<Self, DecodeError> {
        let (header, body_at) = read_header(wire)?;
        let body = Bytes::copy_from_slice(&wire[body_at..]);
        header.into_message(body)
    }

    /// As [`JobMessage::decode`], with the body a slice of `wire` (no copy).
    ///
    /// # Errors
    /// A [`DecodeError`] naming what is wrong; never panics, whatever the bytes.
    pub fn decode_bytes(wire: Bytes) -> Result<Self, DecodeError> {
        let (header, body_at) = read_header(&wire)?;
        let body = wire.slice(body_at..);
        header.into_message(body)
    }
}

/// The header and where the body starts.
fn read_header(wire: &[u8]) -> Result<(HeaderIn, usize), DecodeError> {
    let Some((prefix, rest)) = wire.split_first_chunk::<PREFIX_LEN>() else {
        return Err(DecodeError::TooShort { len: wire.len() });
    };
    if &prefix[..3] != MAGIC {
        return Err(DecodeError::NotAJob);
    }
    if prefix[3] != WIRE_VERSION {
        return Err(DecodeError::UnsupportedVersion {
            found: prefix[3],
            supported: WIRE_VERSION,
        });
    }
    let declared = u32::from_be_bytes([prefix[4], prefix[5], prefix[6], prefix[7]]) as usize;
    if declared > MAX_HEADER_LEN {
        return Err(DecodeError::HeaderTooLarge {
            len: declared,
            max: MAX_HEADER_LEN,
        });
    }
    let Some(header) = rest.get(..declared) else {
        return Err(DecodeError::HeaderTruncated {
            declared,
            available: rest.len(),
        });
    };
    let header: HeaderIn =
        serde_json::from_slice(header).map_err(|e| DecodeError::InvalidHeader(Arc::new(e)))?;
    let body_at = PREFIX_LEN + declared;
    let actual = (wire.len() - body_at) as u64;
    if actual != header.body_len {
        return Err(DecodeError::BodyLength {
            declared: header.body_len,
            actual,
        });
    }
    Ok((header, body_at))
}

impl HeaderIn {
    fn into_message(self, body: Bytes) -> Result<JobMessage, DecodeError> {
        for (field, value) in [
            ("handler", &self.handler),
            ("provider", &self.provider),
            ("id", &self.id),
        ] {
            if value.is_empty() {
                return Err(DecodeError::EmptyField(field));
            }
        }
        if self.attempt == 0 {
            return Err(DecodeError::ZeroAttempt);
        }
        let occurred_at = self
            .occurred_at
            .map(|at| unstamp(at, "occurred_at"))
            .transpose()?;
        let enqueued_at = unstamp(self.enqueued_at, "enqueued_at")?;
        let mut identity = Identity::new(self.id, self.kind).occurred_at(occurred_at);
        identity.metadata.reserve(self.metadata.len());
        for (name, value) in self.metadata {
            let name = names::intern(&name).map_err(|e| match e {
                InternError::TooLong => DecodeError::MetadataNameTooLong,
                InternError::Full => DecodeError::TooManyMetadataNames,
            })?;
            identity.metadata.push((name, value));
        }
        Ok(JobMessage::from_parts(
            self.provider.into(),
            identity,
            body,
            self.handler.into(),
            self.attempt,
            enqueued_at,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    fn job() -> JobMessage {
        let event = Event::new(
            "github",
            Identity::new("d-1", "issues.opened").with_metadata("hook_id", "42"),
            &b"{\"action\":\"opened\"}"[..],
        );
        JobMessage::new(&event, "notify", OffsetDateTime::UNIX_EPOCH)
    }

    fn with_header(header: &[u8], body: &[u8]) -> Vec<u8> {
        let mut wire = b"HGJ\x01".to_vec();
        wire.extend_from_slice(&(header.len() as u32).to_be_bytes());
        wire.extend_from_slice(header);
        wire.extend_from_slice(body);
        wire
    }

    #[test]
    fn the_frame_starts_with_magic_version_and_header_length() {
        let wire = job().encode();
        assert_eq!(&wire[..4], b"HGJ\x01");
        let n = u32::from_be_bytes([wire[4], wire[5], wire[6], wire[7]]) as usize;
        assert!(wire[8..8 + n].starts_with(b"{"));
        assert_eq!(&wire[8 + n..], b"{\"action\":\"opened\"}");
    }

    #[test]
    fn decode_bytes_shares_the_body() {
        let wire = Bytes::from(job().encode());
        let back = JobMessage::decode_bytes(wire.clone()).unwrap();
        assert_eq!(back, job());
        let start = wire.len() - back.body().len();
        assert_eq!(back.body().as_ptr(), wire[start..].as_ptr());
    }

    #[test]
    fn every_malformation_has_its_own_error() {
        let wire = job().encode();
        assert!(matches!(
            JobMessage::decode(&wire[..5]),
            Err(DecodeError::TooShort { len: 5 })
        ));
        assert!(matches!(
            JobMessage::decode(b"XYZ\x01\0\0\0\0"),
            Err(DecodeError::NotAJob)
        ));
        assert!(matches!(
            JobMessage::decode(b"HGJ\x02\0\0\0\0"),
            Err(DecodeError::UnsupportedVersion {
                found: 2,
                supported: 1
            })
        ));
        assert!(matches!(
            JobMessage::decode(b"HGJ\x01\xff\xff\xff\xff"),
            Err(DecodeError::HeaderTooLarge { .. })
        ));
        assert!(matches!(
            JobMessage::decode(b"HGJ\x01\0\0\0\x10{}"),
            Err(DecodeError::HeaderTruncated {
                declared: 16,
                available: 2
            })
        ));
        assert!(matches!(
            JobMessage::decode(&with_header(b"{}", b"")),
            Err(DecodeError::InvalidHeader(_))
        ));
        assert!(matches!(
            JobMessage::decode(&wire[..wire.len() - 1]),
            Err(DecodeError::BodyLength { .. })
        ));
        let mut padded = wire.clone();
        padded.push(b' ');
        assert!(matches!(
            JobMessage::decode(&padded),
            Err(DecodeError::BodyLength { .. })
        ));
    }

    fn header(field: &str, value: &str) -> Vec<u8> {
        let mut header = serde_json::json!({
            "handler": "h", "provider": "p", "id": "i", "kind": "k",
            "occurred_at": null, "metadata": [], "attempt": 1,
            "enqueued_at": [0, 0, 0], "body_len": 0,
        });
        header[field] = serde_json::from_str(value).unwrap();
        serde_json::to_vec(&header).unwrap()
    }

    #[test]
    fn fields_out_of_range_are_refused() {
        let decode = |field, value| JobMessage::decode(&with_header(&header(field, value), b""));
        assert!(decode("handler", "\"h\"").is_ok());
        assert!(matches!(
            decode("handler", "\"\""),
            Err(DecodeError::EmptyField("handler"))
        ));
        assert!(matches!(
            decode("provider", "\"\""),
            Err(DecodeError::EmptyField("provider"))
        ));
        assert!(matches!(
            decode("id", "\"\""),
            Err(DecodeError::EmptyField("id"))
        ));
        assert!(matches!(
            decode("attempt", "0"),
            Err(DecodeError::ZeroAttempt)
        ));
        assert!(matches!(
            decode("enqueued_at", "[0, 1000000000, 0]"),
            Err(DecodeError::InvalidTimestamp("enqueued_at"))
        ));
        assert!(matches!(
            decode("occurred_at", "[9223372036854775807, 0, 0]"),
            Err(DecodeError::InvalidTimestamp("occurred_at"))
        ));
        assert!(matches!(
            decode("enqueued_at", "[0, 0, 999999]"),
            Err(DecodeError::InvalidTimestamp("enqueued_at"))
        ));
        let long = format!("[[\"{}\", \"v\"]]", "n".repeat(129));
        assert!(matches!(
            decode("metadata", &long),
            Err(DecodeError::MetadataNameTooLong)
        ));
        assert!(matches!(
            decode("extra", "1"),
            Err(DecodeError::InvalidHeader(_))
        ));
    }
}
