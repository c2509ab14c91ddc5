//! The admin routes' query strings: strict parsing into journal queries and
//! flags, with a typed error for every refusal.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::axum::allowlist::echo;
use crate::journal::{DeliveryStatus, JournalCursor, JournalFilter, JournalQuery};

/// The parameters `GET /deliveries` takes.
const DELIVERIES_PARAMS: &str =
    "status, provider, kind, event_id, since, until, unresolved, limit, cursor";

/// Why a query string was refused (400 `bad_query`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// A `%` not followed by two hexadecimal digits, or bytes that are not
    /// UTF-8 once decoded.
    #[error("the query string is not percent-encoded UTF-8")]
    BadEncoding,
    /// A parameter this endpoint does not take (a typo would otherwise widen
    /// the filter silently).
    #[error("unknown query parameter `{name}`; this endpoint takes: {takes}")]
    UnknownParameter {
        /// The parameter (its first 64 characters).
        name: String,
        /// The parameters the endpoint takes.
        takes: &'static str,
    },
    /// A parameter that takes one value was given twice.
    #[error("query parameter `{0}` is given more than once")]
    Repeated(&'static str),
    /// A parameter given without a value (`provider=`).
    #[error("query parameter `{0}` is empty")]
    Empty(&'static str),
    /// A `status` that is not a delivery status name.
    #[error("unknown delivery status `{0}`; the statuses are {names}", names = status_names())]
    UnknownStatus(String),
    /// `since` or `until` is neither RFC 3339 nor Unix milliseconds.
    #[error(
        "`{name}` must be an RFC 3339 time such as 2026-01-31T12:00:00Z (write `+` as `%2B`) \
         or Unix milliseconds, not `{value}`"
    )]
    BadTime {
        /// `since` or `until`.
        name: &'static str,
        /// The value (its first 64 characters).
        value: String,
    },
    /// `since` is not before `until`: the range holds nothing.
    #[error("`since` must be before `until`")]
    EmptyRange,
    /// `limit` is not a whole number from 1 to 1,000.
    #[error("`limit` must be a whole number from 1 to 1000, not `{0}`")]
    BadLimit(String),
    /// `cursor` is not the `next` of a page.
    #[error("`cursor` must be the `next` of a previous page (32 hexadecimal digits)")]
    BadCursor,
    /// A flag that is not `true` or `false`.
    #[error("`{name}` must be `true` or `false`, not `{value}`")]
    BadFlag {
        /// The flag.
        name: &'static str,
        /// The value (its first 64 characters).
        value: String,
    },
}

/// Every status name, for the error message.
fn status_names() -> String {
    let names: Vec<&str> = DeliveryStatus::ALL.iter().map(|s| s.as_str()).collect();
    names.join(", ")
}

/// The `GET /deliveries` query: `status` (repeatable, each a comma-separated
/// list), `provider`, `kind`, `event_id`, `since`, `until`, `unresolved`,
/// `limit` (1 to 1,000, default 50) and `cursor`.
pub(crate) fn deliveries(raw: Option<&str>) -> Result<JournalQuery, QueryError> {
    let mut filter = JournalFilter::default();
    let mut query = JournalQuery::default();
    let mut seen = Seen::default();
    for (name, value) in pairs(raw.unwrap_or_default())? {
        match name.as_str() {
            "status" => {
                for status in value.split(',') {
                    let status = status.trim();
                    if status.is_empty() {
                        return Err(QueryError::Empty("status"));
                    }
                    let status: DeliveryStatus = status
                        .parse()
                        .map_err(|_| QueryError::UnknownStatus(echo(status)))?;
                    if !filter.statuses.contains(&status) {
                        filter.statuses.push(status);
                    }
                }
            }
            "provider" => filter.provider = Some(seen.text("provider", value)?),
            "kind" => filter.kind = Some(seen.text("kind", value)?),
            "event_id" => filter.event_id = Some(seen.text("event_id", value)?),
            "since" => filter.since = Some(time("since", &seen.text("since", value)?)?),
            "until" => filter.until = Some(time("until", &seen.text("until", value)?)?),
            "unresolved" => {
                filter.unresolved = flag("unresolved", &seen.text("unresolved", value)?)?
            }
            "limit" => query.limit = limit(&seen.text("limit", value)?)?,
            "cursor" => {
                let value = seen.text("cursor", value)?;
                query.after = Some(
                    value
                        .parse::<JournalCursor>()
                        .map_err(|_| QueryError::BadCursor)?,
                );
            }
            _ => {
                return Err(QueryError::UnknownParameter {
                    name: echo(&name),
                    takes: DELIVERIES_PARAMS,
                })
            }
        }
    }
    if let (Some(since), Some(until)) = (filter.since, filter.until) {
        if since >= until {
            return Err(QueryError::EmptyRange);
        }
    }
    query.filter = filter;
    Ok(query)
}

/// A query string of one optional flag `name` (`true` or `false`, default
/// `false`) and nothing else.
pub(crate) fn only_flag(raw: Option<&str>, name: &'static str) -> Result<bool, QueryError> {
    let mut seen = Seen::default();
    let mut value = false;
    for (param, given) in pairs(raw.unwrap_or_default())? {
        if param != name {
            return Err(QueryError::UnknownParameter {
                name: echo(&param),
                takes: name,
            });
        }
        value = flag(name, &seen.text(name, given)?)?;
    }
    Ok(value)
}

/// The single-valued parameters seen so far.
#[derive(Default)]
struct Seen(Vec<&'static str>);

impl Seen {
    /// `value`, unless `name` came before or `value` is empty.
    fn text(&mut self, name: &'static str, value: String) -> Result<String, QueryError> {
        if self.0.contains(&name) {
            return Err(QueryError::Repeated(name));
        }
        self.0.push(name);
        if value.is_empty() {
            return Err(QueryError::Empty(name));
        }
        Ok(value)
    }
}

/// The decoded `name=value` pairs of an `application/x-www-form-urlencoded`
/// query (`+` is a space; empty pieces between `&`s are skipped; a name
/// without `=` has an empty value).
fn pairs(raw: &str) -> Result<Vec<(String, String)>, QueryError> {
    raw.split('&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| {
            let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
            Ok((decode(name)?, decode(value)?))
        })
        .collect()
}

fn decode(text: &str) -> Result<String, QueryError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        match byte {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or(QueryError::BadEncoding)?;
                let hex = std::str::from_utf8(hex).map_err(|_| QueryError::BadEncoding)?;
                if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(QueryError::BadEncoding);
                }
                out.push(u8::from_str_radix(hex, 16).map_err(|_| QueryError::BadEncoding)?);
                i += 2;
            }
            _ => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| QueryError::BadEncoding)
}

/// An RFC 3339 time, or Unix milliseconds (digits only).
fn time(name: &'static str, value: &str) -> Result<SystemTime, QueryError> {
    let bad = || QueryError::BadTime {
        name,
        value: echo(value),
    };
    if value.bytes().all(|b| b.is_ascii_digit()) {
        let millis: u64 = value.parse().map_err(|_| bad())?;
        return UNIX_EPOCH
            .checked_add(Duration::from_millis(millis))
            .ok_or_else(bad);
    }
    let at = OffsetDateTime::parse(value, &Rfc3339).map_err(|_| bad())?;
    let seconds = u64::try_from(at.unix_timestamp()).map_err(|_| bad())?;
    UNIX_EPOCH
        .checked_add(Duration::new(seconds, at.nanosecond()))
        .ok_or_else(bad)
}

fn flag(name: &'static str, value: &str) -> Result<bool, QueryError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(QueryError::BadFlag {
            name,
            value: echo(value),
        }),
    }
}

fn limit(value: &str) -> Result<usize, QueryError> {
    let bad = || QueryError::BadLimit(echo(value));
    if !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let limit: usize = value.parse().map_err(|_| bad())?;
    if (1..=JournalQuery::MAX_LIMIT).contains(&limit) {
        Ok(limit)
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_parameter_parses() {
        let query = deliveries(Some(
            "status=critical_failed,store_unavailable&status=processed&provider=git%2Bhub\
             &kind=issues.opened&event_id=a+b&since=2026-01-31T12:00:00Z&until=1769864400001\
             &unresolved=true&limit=7&cursor=0123456789abcdef0123456789abcdef",
        ))
        .unwrap();
        let filter = &query.filter;
        assert_eq!(
            filter.statuses,
            [
                DeliveryStatus::CriticalFailed,
                DeliveryStatus::StoreUnavailable,
                DeliveryStatus::Processed
            ]
        );
        assert_eq!(filter.provider.as_deref(), Some("git+hub"));
        assert_eq!(filter.kind.as_deref(), Some("issues.opened"));
        assert_eq!(filter.event_id.as_deref(), Some("a b"));
        let since = UNIX_EPOCH + Duration::from_secs(1_769_860_800);
        assert_eq!(filter.since, Some(since));
        assert_eq!(
            filter.until,
            Some(UNIX_EPOCH + Duration::from_millis(1_769_864_400_001))
        );
        assert!(filter.unresolved);
        assert_eq!(query.limit, 7);
        assert_eq!(
            query.after.unwrap().to_string(),
            "0123456789abcdef0123456789abcdef"
        );
        let offset = deliveries(Some("since=2026-01-31T13:00:00.5%2B01:00")).unwrap();
        assert_eq!(
            offset.filter.since,
            Some(since + Duration::from_millis(500))
        );
        assert_eq!(deliveries(None).unwrap(), JournalQuery::default());
        assert_eq!(deliveries(Some("&&")).unwrap(), JournalQuery::default());
    }

    #[test]
    fn every_refusal_is_typed() {
        let refused = |q: &str| deliveries(Some(q)).unwrap_err();
        assert_eq!(
            refused("stauts=processed"),
            QueryError::UnknownParameter {
                name: "stauts".into(),
                takes: DELIVERIES_PARAMS
            }
        );
        assert_eq!(
            refused("provider=a&provider=b"),
            QueryError::Repeated("provider")
        );
        assert_eq!(refused("provider="), QueryError::Empty("provider"));
        assert_eq!(refused("status=processed,"), QueryError::Empty("status"));
        assert_eq!(
            refused("status=Processed"),
            QueryError::UnknownStatus("Processed".into())
        );
        let message = refused("status=Processed").to_string();
        for status in DeliveryStatus::ALL {
            assert!(message.contains(status.as_str()), "{message}");
        }
        assert!(matches!(
            refused("since=yesterday"),
            QueryError::BadTime { name: "since", .. }
        ));
        assert!(matches!(
            refused("until=2026-01-31T13:00:00+01:00"),
            QueryError::BadTime { name: "until", .. }
        ));
        assert!(matches!(
            refused("since=99999999999999999999999"),
            QueryError::BadTime { .. }
        ));
        assert!(matches!(
            refused("since=1969-01-01T00:00:00Z"),
            QueryError::BadTime { .. }
        ));
        assert_eq!(refused("since=2000&until=1000"), QueryError::EmptyRange);
        assert_eq!(refused("since=1000&until=1000"), QueryError::EmptyRange);
        for bad in ["0", "1001", "-1", "+5", "ten", "99999999999999999999999"] {
            assert_eq!(
                refused(&format!("limit={bad}")),
                QueryError::BadLimit(bad.replace('+', " "))
            );
        }
        assert_eq!(refused("cursor=abc"), QueryError::BadCursor);
        assert_eq!(
            refused("unresolved=yes"),
            QueryError::BadFlag {
                name: "unresolved",
                value: "yes".into()
            }
        );
        for bad in [
            "provider=%",
            "provider=%4",
            "provider=%zz",
            "provider=%ff",
            "%C3%28=1",
        ] {
            assert_eq!(refused(bad), QueryError::BadEncoding, "{bad}");
        }
    }

    #[test]
    fn flags_take_true_or_false_only() {
        assert_eq!(only_flag(None, "force"), Ok(false));
        assert_eq!(only_flag(Some("force=true"), "force"), Ok(true));
        assert_eq!(only_flag(Some("force=false"), "force"), Ok(false));
        assert_eq!(
            only_flag(Some("force=true&force=true"), "force"),
            Err(QueryError::Repeated("force"))
        );
        assert!(matches!(
            only_flag(Some("force"), "force"),
            Err(QueryError::Empty("force"))
        ));
        assert!(matches!(
            only_flag(Some("force=1"), "force"),
            Err(QueryError::BadFlag { .. })
        ));
        assert!(matches!(
            only_flag(Some("wait=true"), "force"),
            Err(QueryError::UnknownParameter { takes: "force", .. })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_query_strings_never_panic(raw in ".{0,200}") {
            let _ = deliveries(Some(&raw));
            let _ = only_flag(Some(&raw), "force");
        }

        #[test]
        fn query_shaped_strings_never_panic(
            pieces in proptest::collection::vec(
                (
                    prop_oneof![
                        Just("status".to_owned()), Just("limit".to_owned()),
                        Just("since".to_owned()), Just("until".to_owned()),
                        Just("cursor".to_owned()), Just("unresolved".to_owned()),
                        Just("provider".to_owned()), "[a-z%+]{0,8}",
                    ],
                    "[0-9a-zA-Z%+:,._\\-]{0,40}",
                ),
                0..8,
            )
        ) {
            let raw: Vec<String> = pieces.iter().map(|(n, v)| format!("{n}={v}")).collect();
            match deliveries(Some(&raw.join("&"))) {
                Ok(query) => prop_assert!((1..=JournalQuery::MAX_LIMIT).contains(&query.limit)),
                Err(err) => prop_assert!(!err.to_string().is_empty()),
            }
        }

        #[test]
        fn times_round_trip_as_unix_milliseconds(millis in 0u64..=253_402_300_799_999) {
            let query = deliveries(Some(&format!("since={millis}"))).unwrap();
            prop_assert_eq!(query.filter.since, Some(UNIX_EPOCH + Duration::from_millis(millis)));
        }
    }
}
