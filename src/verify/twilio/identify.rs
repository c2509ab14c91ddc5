//! Naming a verified Twilio delivery: dedup id, kind, account.

use serde_json::{Map, Value};

use super::super::{optional_header, IdentifyError, Identity};
use super::params::Params;
use crate::headers::Headers;

/// The header Twilio sends with every webhook request, the same on each of
/// its retries of that request.
pub(super) const IDEMPOTENCY_TOKEN: &str = "I-Twilio-Idempotency-Token";

/// The parameters that name a message, in the order they are looked for
/// (`SmsSid` and `SmsMessageSid` are the older names Twilio still sends).
const MESSAGE_SIDS: [&str; 3] = ["MessageSid", "SmsMessageSid", "SmsSid"];

/// Names a delivery. A body whose first non-blank byte is `{` or `[` is JSON
/// (Twilio's form parameters never start so); every other body is form
/// parameters.
/// With `use_token` false the token header is ignored (the id comes from
/// what is signed).
pub(super) fn identify(
    body: &[u8],
    headers: &Headers,
    use_token: bool,
) -> Result<Identity, IdentifyError> {
    let token = optional_header(headers, IDEMPOTENCY_TOKEN).filter(|_| use_token);
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{' | b'[') => json(body, token),
        _ => Ok(form(&Params::parse(body), token)),
    }
}

/// A form delivery: what it is about, from the first product SID found.
fn form(params: &Params<'_>, token: Option<&str>) -> Identity {
    let get = |name: &'static str| params.get(name);
    let status = |kind: &str, name: &'static str| match get(name) {
        Some(status) => format!("{kind}.{status}"),
        None => kind.to_owned(),
    };
    let message = MESSAGE_SIDS.iter().find_map(|&name| get(name));
    let (sid, kind) = if let Some(sid) = message {
        let kind = match get("MessageStatus") {
            Some(status) => format!("message.status.{status}"),
            None => "message".to_owned(),
        };
        (Some(sid), kind)
    } else if let Some(sid) = get("RecordingSid") {
        (Some(sid), status("recording", "RecordingStatus"))
    } else if let Some(sid) = get("TranscriptionSid") {
        (Some(sid), status("transcription", "TranscriptionStatus"))
    } else if let Some(sid) = get("ConferenceSid") {
        (Some(sid), status("conference", "StatusCallbackEvent"))
    } else if let Some(sid) = get("CallSid") {
        let progress = get("CallbackSource") == Some("call-progress-events")
            || get("SequenceNumber").is_some();
        let kind = match get("CallStatus") {
            Some(status) if progress => format!("call.status.{status}"),
            _ => "call".to_owned(),
        };
        (Some(sid), kind)
    } else {
        let kind = get("EventType").unwrap_or("other").to_owned();
        (get("Sid"), kind)
    };
    let id = match (token, sid) {
        (Some(token), _) => token.to_owned(),
        (None, Some(sid)) => format!("{sid}:{}", params.digest()),
        (None, None) => params.digest(),
    };
    let mut identity = Identity::new(id, kind);
    if let Some(account) = get("AccountSid") {
        identity = identity.with_metadata("account_sid", account);
    }
    identity
}

/// A JSON delivery (Event Streams): one CloudEvent object, or an array of them.
fn json(body: &[u8], token: Option<&str>) -> Result<Identity, IdentifyError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| IdentifyError::InvalidJson(e.to_string()))?;
    let events: Vec<&Map<String, Value>> = match &value {
        Value::Object(event) => vec![event],
        Value::Array(events) => events
            .iter()
            .map(Value::as_object)
            .collect::<Option<_>>()
            .ok_or(IdentifyError::Unsupported(
                "a JSON array whose items are not all objects",
            ))?,
        _ => {
            return Err(IdentifyError::Unsupported(
                "a JSON body that is neither an object nor an array of objects",
            ))
        }
    };
    let text = |event: &&Map<String, Value>, name: &str| {
        event
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let [first, rest @ ..] = events.as_slice() else {
        return Err(IdentifyError::Unsupported("an empty JSON array"));
    };
    let kind = text(first, "type")
        .filter(|kind| rest.iter().all(|e| text(e, "type").as_ref() == Some(kind)));
    let id = match token {
        Some(token) => token.to_owned(),
        None => {
            let ids = events
                .iter()
                .map(|e| text(e, "id"))
                .collect::<Option<Vec<_>>>()
                .ok_or(IdentifyError::MissingField("id"))?;
            if rest.is_empty() {
                ids.concat()
            } else {
                let mut hasher = twox_hash::XxHash3_128::new();
                for id in &ids {
                    hasher.write(&(id.len() as u64).to_le_bytes());
                    hasher.write(id.as_bytes());
                }
                format!("batch:{}:{:032x}", ids.len(), hasher.finish_128())
            }
        }
    };
    let kind = match (kind, rest.is_empty()) {
        (Some(kind), _) => kind,
        (None, true) => "event".to_owned(),
        (None, false) => "batch".to_owned(),
    };
    let occurred_at = if rest.is_empty() {
        text(first, "time").and_then(|time| {
            time::OffsetDateTime::parse(&time, &time::format_description::well_known::Rfc3339).ok()
        })
    } else {
        None
    };
    Ok(Identity::new(id, kind).occurred_at(occurred_at))
}
