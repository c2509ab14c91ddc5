//! What a verified Slack body is, read from the signed bytes: an Events API
//! envelope (JSON), an interactivity payload (`payload=<JSON>`, form-encoded),
//! a slash command (form-encoded with `command`), or one of Slack's checks of
//! the endpoint (`url_verification`, `ssl_check=1`).
//!
//! JSON or form is decided on the signed bytes, not the unsigned
//! `Content-Type` (which Bolt reads): a body whose first byte other than
//! white space is `{` or `[` is JSON, any other is a form. No form field name
//! Slack sends starts with either, and no JSON document starts otherwise
//! except bare scalars, which are no Slack payload.

use std::borrow::Cow;
use std::ops::Range;

use memchr::memmem;
use serde_json::Value;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::super::envelope::Scalar;
use super::super::json;
use super::super::{optional_header, Handshake, IdentifyError, Identity};
use super::Slack;
use crate::headers::Headers;

/// Metadata names read from Slack's retry headers, with their header.
const RETRY_METADATA: [(&str, &str); 2] = [
    ("retry_num", "X-Slack-Retry-Num"),
    ("retry_reason", "X-Slack-Retry-Reason"),
];

/// The answer to a signed check of the endpoint, if `body` is one.
pub(super) fn handshake(body: &[u8]) -> Option<Handshake> {
    if is_json(body) {
        // Only a body that can name `url_verification` is read: as written, or
        // with its letters escaped (`\u0075rl…`), which Slack never does.
        if memmem::find(body, b"url_verification").is_none()
            && memmem::find(body, b"\\u00").is_none()
        {
            return None;
        }
        let top = TopLevel::read(body).ok()?;
        if top.string(Key::Type).as_deref() != Some("url_verification") {
            return None;
        }
        let challenge = top.string(Key::Challenge).filter(|c| !c.is_empty())?;
        return Some(Handshake::text(challenge.into_owned()));
    }
    let form = Form::read(body);
    let is_check = form.payload.first.is_none()
        && form.command.first.is_none()
        && form.value(&form.ssl_check).as_deref() == Some("1");
    is_check.then(|| Handshake::text(bytes::Bytes::new()))
}

/// The identity of a verified body that is not a check of the endpoint.
pub(super) fn identify(body: &[u8], headers: &Headers) -> Result<Identity, IdentifyError> {
    let mut identity = if is_json(body) {
        events_api(body)?
    } else {
        form(body)?
    };
    for (name, header) in RETRY_METADATA {
        if let Some(value) = optional_header(headers, header) {
            identity = identity.with_metadata(name, value);
        }
    }
    Ok(identity)
}

/// Whether `body` is JSON rather than a form (see the module's docs).
fn is_json(body: &[u8]) -> bool {
    matches!(
        body.iter()
            .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r')),
        Some(b'{' | b'[')
    )
}

/// `sha256:` and the hex SHA-256 of the raw body, the fallback dedup id.
fn digest(body: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(body)))
}

/// An Events API envelope: `event_callback` (id `event_id`, kind the inner
/// `event.type` and `.subtype`), or another type (`app_rate_limited`, …:
/// id `event_id` else the body digest, kind the type).
fn events_api(body: &[u8]) -> Result<Identity, IdentifyError> {
    let top = TopLevel::read(body)?;
    let kind = top
        .string(Key::Type)
        .filter(|k| !k.is_empty())
        .ok_or(IdentifyError::MissingField("type"))?;
    let event_id = top.string(Key::EventId).filter(|id| !id.is_empty());
    let identity = match &*kind {
        "event_callback" => {
            let id = event_id.ok_or(IdentifyError::MissingField("event_id"))?;
            Identity::new(id, inner_kind(body, top.span(Key::Event))?)
        }
        "url_verification" => {
            return Err(IdentifyError::Unsupported(
                "a `url_verification` check without a string `challenge`: Slack's check of the endpoint is answered by `Verifier::handshake`, not handled as an event",
            ))
        }
        _ => Identity::new(
            event_id.map_or_else(|| digest(body), Cow::into_owned),
            kind.into_owned(),
        ),
    };
    let occurred_at = match top.scalar(Key::EventTime) {
        Some(Scalar::Int(seconds)) => OffsetDateTime::from_unix_timestamp(seconds).ok(),
        _ => None,
    };
    let mut identity = identity.occurred_at(occurred_at);
    for (name, key) in [("team_id", Key::TeamId), ("api_app_id", Key::ApiAppId)] {
        if let Some(value) = top.string(key).filter(|v| !v.is_empty()) {
            identity = identity.with_metadata(name, value.into_owned());
        }
    }
    Ok(identity)
}

/// The kind of an `event_callback`: its `event.type`, and `.` and
/// `event.subtype` when that is a non-empty string.
fn inner_kind(body: &[u8], event: Option<Range<usize>>) -> Result<String, IdentifyError> {
    let missing = IdentifyError::MissingField("event.type");
    let event = event
        .and_then(|span| body.get(span))
        .ok_or(missing.clone())?;
    let (mut kind, mut subtype) = (None, None);
    // The whole body is valid JSON, so this value is a valid document too.
    json::check_members(event, |key, value| match key_name(key).as_deref() {
        Some("type") => kind = Some(value),
        Some("subtype") => subtype = Some(value),
        _ => {}
    })
    .map_err(|e| IdentifyError::InvalidJson(e.to_string()))?;
    let string = |span: Option<Range<usize>>| match read(event, span) {
        Some(Scalar::Str(s)) if !s.is_empty() => Some(s),
        _ => None,
    };
    let kind = string(kind).ok_or(missing)?;
    Ok(match string(subtype) {
        Some(subtype) => format!("{kind}.{subtype}"),
        None => kind.into_owned(),
    })
}

/// The top-level keys an Events API body is read by.
#[derive(Debug, Clone, Copy)]
enum Key {
    Type,
    EventId,
    EventTime,
    TeamId,
    ApiAppId,
    Event,
    Challenge,
}

impl Key {
    const ALL: [Key; 7] = [
        Key::Type,
        Key::EventId,
        Key::EventTime,
        Key::TeamId,
        Key::ApiAppId,
        Key::Event,
        Key::Challenge,
    ];

    fn name(self) -> &'static str {
        match self {
            Key::Type => "type",
            Key::EventId => "event_id",
            Key::EventTime => "event_time",
            Key::TeamId => "team_id",
            Key::ApiAppId => "api_app_id",
            Key::Event => "event",
            Key::Challenge => "challenge",
        }
    }
}

/// Where the known top-level members of a JSON body are (a repeated key
/// keeps its last value, as `serde_json::Value` does).
struct TopLevel<'a> {
    body: &'a [u8],
    spans: [Option<Range<usize>>; Key::ALL.len()],
}

impl<'a> TopLevel<'a> {
    /// Reads `body`, which must be a document serde_json accepts (as
    /// `Event::json` needs).
    fn read(body: &'a [u8]) -> Result<Self, IdentifyError> {
        let mut spans: [Option<Range<usize>>; Key::ALL.len()] = Default::default();
        json::check_members(body, |key, value| {
            if let Some(name) = key_name(key) {
                if let Some(index) = Key::ALL.iter().position(|k| k.name() == name) {
                    spans[index] = Some(value);
                }
            }
        })
        .map_err(|e| IdentifyError::InvalidJson(e.to_string()))?;
        Ok(Self { body, spans })
    }

    fn span(&self, key: Key) -> Option<Range<usize>> {
        self.spans[key as usize].clone()
    }

    fn scalar(&self, key: Key) -> Option<Scalar<'a>> {
        read(self.body, self.span(key))
    }

    fn string(&self, key: Key) -> Option<Cow<'a, str>> {
        match self.scalar(key)? {
            Scalar::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// The string or integer at `span` of a document already validated.
fn read(body: &[u8], span: Option<Range<usize>>) -> Option<Scalar<'_>> {
    let text = body.get(span?)?;
    match text.first() {
        Some(b'"' | b'-' | b'0'..=b'9') => serde_json::from_slice(text).ok(),
        _ => Some(Scalar::Other),
    }
}

/// The name a key's JSON text (quotes included) stands for, escapes decoded
/// as `JSON.parse` would.
fn key_name(key: &[u8]) -> Option<Cow<'_, str>> {
    if key.contains(&b'\\') {
        return serde_json::from_slice::<String>(key).ok().map(Into::into);
    }
    let inner = key.get(1..key.len().checked_sub(1)?)?;
    std::str::from_utf8(inner).ok().map(Into::into)
}

/// A form field: its first raw `name=value` segment, and whether the name
/// came again.
#[derive(Debug, Default, Clone, Copy)]
struct Field<'a> {
    first: Option<&'a [u8]>,
    repeated: bool,
}

/// The fields of a form body identification reads, found without decoding
/// any value; a value is decoded (as `application/x-www-form-urlencoded`:
/// `+` is a space, percent escapes, invalid UTF-8 replaced) when read.
#[derive(Debug, Default)]
struct Form<'a> {
    payload: Field<'a>,
    command: Field<'a>,
    trigger_id: Field<'a>,
    team_id: Field<'a>,
    api_app_id: Field<'a>,
    ssl_check: Field<'a>,
}

impl<'a> Form<'a> {
    fn read(body: &'a [u8]) -> Self {
        let mut form = Self::default();
        for segment in body.split(|&b| b == b'&').filter(|s| !s.is_empty()) {
            let raw_name = segment.split(|&b| b == b'=').next().unwrap_or_default();
            let name = form_urlencoded::parse(raw_name)
                .next()
                .map(|(name, _)| name)
                .unwrap_or_default();
            let field = match &*name {
                "payload" => &mut form.payload,
                "command" => &mut form.command,
                "trigger_id" => &mut form.trigger_id,
                "team_id" => &mut form.team_id,
                "api_app_id" => &mut form.api_app_id,
                "ssl_check" => &mut form.ssl_check,
                _ => continue,
            };
            if field.first.is_some() {
                field.repeated = true;
            } else {
                field.first = Some(segment);
            }
        }
        form
    }

    /// The decoded value of a field's first segment.
    fn value(&self, field: &Field<'a>) -> Option<Cow<'a, str>> {
        form_urlencoded::parse(field.first?)
            .next()
            .map(|(_, value)| value)
    }

    /// The decoded value, when not empty.
    fn non_empty(&self, field: &Field<'a>) -> Option<Cow<'a, str>> {
        self.value(field).filter(|v| !v.is_empty())
    }
}

/// An interactivity payload or a slash command.
fn form(body: &[u8]) -> Result<Identity, IdentifyError> {
    let form = Form::read(body);
    if form.payload.repeated || form.command.repeated {
        return Err(IdentifyError::Unsupported(
            "a form body with a repeated `payload` or `command` field",
        ));
    }
    if form.payload.first.is_some() {
        let payload = form.value(&form.payload).unwrap_or_default();
        return interaction(body, &payload);
    }
    if form.command.first.is_some() {
        let command = form
            .non_empty(&form.command)
            .ok_or(IdentifyError::MissingField("command"))?;
        let id = form
            .non_empty(&form.trigger_id)
            .map_or_else(|| digest(body), Cow::into_owned);
        let mut identity = Identity::new(id, format!("{}.{command}", Slack::SLASH_COMMAND_KIND));
        for (name, field) in [("team_id", &form.team_id), ("api_app_id", &form.api_app_id)] {
            if let Some(value) = form.non_empty(field) {
                identity = identity.with_metadata(name, value.into_owned());
            }
        }
        return Ok(identity);
    }
    Err(IdentifyError::Unsupported(
        if form.ssl_check.first.is_some() {
            "an `ssl_check`, Slack's check of the endpoint, which is answered by `Verifier::handshake`"
        } else {
            "a form body that is neither an interactivity payload (`payload=`) nor a slash command (`command=`)"
        },
    ))
}

/// A non-empty string value.
fn text(value: Option<&Value>) -> Option<&str> {
    value.and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// An interactivity payload (the JSON of a form's `payload` field): kind its
/// `type` and the id Bolt routes it by, dedup id its `trigger_id` else the
/// body digest.
fn interaction(body: &[u8], payload: &str) -> Result<Identity, IdentifyError> {
    let payload: Value = serde_json::from_str(payload)
        .map_err(|e| IdentifyError::InvalidJson(format!("in the `payload` field: {e}")))?;
    let kind = text(payload.get("type")).ok_or(IdentifyError::MissingField("payload.type"))?;
    let refinement = match kind {
        "block_actions" => text(
            payload
                .get("actions")
                .and_then(|actions| actions.get(0))
                .and_then(|action| action.get("action_id")),
        ),
        "block_suggestion" => text(payload.get("action_id")),
        "view_submission" | "view_closed" => {
            text(payload.get("view").and_then(|view| view.get("callback_id")))
        }
        _ => text(payload.get("callback_id")),
    };
    let kind = match refinement {
        Some(refinement) => format!("{kind}.{refinement}"),
        None => kind.to_owned(),
    };
    let id = text(payload.get("trigger_id")).map_or_else(|| digest(body), str::to_owned);
    let mut identity = Identity::new(id, kind);
    let team = text(payload.get("team").and_then(|team| team.get("id")));
    for (name, value) in [
        ("team_id", team),
        ("api_app_id", text(payload.get("api_app_id"))),
    ] {
        if let Some(value) = value {
            identity = identity.with_metadata(name, value);
        }
    }
    Ok(identity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_or_form_is_decided_on_the_first_byte() {
        assert!(is_json(b"{}"));
        assert!(is_json(b" \r\n\t[1]"));
        assert!(!is_json(b"payload=%7B%7D"));
        assert!(!is_json(b""));
        assert!(!is_json(b"\"text\""));
    }

    #[test]
    fn form_fields_are_found_by_their_decoded_names_and_values_decoded_on_read() {
        let form = Form::read(b"&&command=%2Fdeploy+now&trigger%5Fid=1.2.a%3Db&x=1&command=again");
        assert!(form.command.repeated);
        assert_eq!(form.value(&form.command).as_deref(), Some("/deploy now"));
        assert_eq!(form.value(&form.trigger_id).as_deref(), Some("1.2.a=b"));
        assert_eq!(form.value(&form.payload), None);
        let form = Form::read(b"ssl_check=1&token=x");
        assert_eq!(form.value(&form.ssl_check).as_deref(), Some("1"));
        let form = Form::read(b"payload");
        assert_eq!(form.value(&form.payload).as_deref(), Some(""));
    }

    #[test]
    fn top_level_keys_decode_escapes_and_keep_the_last_repeat() {
        let top = TopLevel::read(br#"{"t\u0079pe":"a","type":"b","event":{"type":"x"}}"#).unwrap();
        assert_eq!(top.string(Key::Type).as_deref(), Some("b"));
        assert_eq!(inner_kind(top.body, top.span(Key::Event)).unwrap(), "x");
        assert!(TopLevel::read(b"{\"type\":").is_err());
        assert_eq!(key_name(b"\""), None);
    }
}
