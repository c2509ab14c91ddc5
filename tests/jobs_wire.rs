//! The job wire encoding: every message round-trips exactly, and no bytes,
//! however hostile, make the decoder panic.

use bytes::Bytes;
use hookgate::jobs::{DecodeError, JobMessage, WIRE_VERSION};
use hookgate::{Event, Identity};
use proptest::prelude::*;
use time::{OffsetDateTime, UtcOffset};

const NAMES: &[&str] = &[
    "shop_domain",
    "api_version",
    "event_id",
    "hook_id",
    "retry_num",
];

fn timestamp() -> impl Strategy<Value = OffsetDateTime> {
    (
        -377_705_116_800i64..=253_402_300_799,
        0u32..1_000_000_000,
        -86_399i32..=86_399,
    )
        .prop_map(|(secs, nanos, offset)| {
            OffsetDateTime::from_unix_timestamp(secs)
                .unwrap()
                .replace_nanosecond(nanos)
                .unwrap()
                .to_offset(UtcOffset::from_whole_seconds(offset).unwrap())
        })
        .prop_filter("offset kept in range", |at| at.year().abs() <= 9999)
}

fn job() -> impl Strategy<Value = JobMessage> {
    (
        "[a-z][a-z0-9_-]{0,15}",
        ".{1,40}",
        ".{0,40}",
        proptest::option::of(timestamp()),
        proptest::collection::vec((0..NAMES.len(), ".{0,20}"), 0..4),
        proptest::collection::vec(any::<u8>(), 0..512),
        ".{1,30}",
        1u32..,
        timestamp(),
    )
        .prop_map(
            |(provider, id, kind, occurred, metadata, body, handler, attempt, enqueued)| {
                let mut identity = Identity::new(id, kind).occurred_at(occurred);
                for (name, value) in metadata {
                    identity = identity.with_metadata(NAMES[name], value);
                }
                let event = Event::new(provider, identity, body);
                JobMessage::new(&event, &handler, enqueued).with_attempt(attempt)
            },
        )
}

fn same_instant_and_offset(a: Option<OffsetDateTime>, b: Option<OffsetDateTime>) -> bool {
    a == b && a.map(|t| t.offset()) == b.map(|t| t.offset())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn every_job_round_trips_exactly(job in job()) {
        let wire = job.encode();
        for back in [JobMessage::decode(&wire).unwrap(), JobMessage::decode_bytes(Bytes::from(wire.clone())).unwrap()] {
            prop_assert_eq!(&back, &job);
            prop_assert_eq!(back.key(), job.key());
            prop_assert_eq!(back.body(), job.body());
            prop_assert_eq!(back.attempt(), job.attempt());
            prop_assert!(same_instant_and_offset(Some(back.enqueued_at()), Some(job.enqueued_at())));
            prop_assert!(same_instant_and_offset(back.identity().occurred_at, job.identity().occurred_at));
            let event = back.event();
            prop_assert_eq!(event.key(), job.event().key());
            prop_assert_eq!(event.identity(), job.identity());
            prop_assert_eq!(event.body(), job.body());
            prop_assert_eq!(back.encode(), wire.clone());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = JobMessage::decode(&bytes);
    }

    #[test]
    fn arbitrary_bytes_after_a_valid_prefix_never_panic(
        len in 0u32..300,
        rest in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut wire = b"HGJ".to_vec();
        wire.push(WIRE_VERSION);
        wire.extend_from_slice(&len.to_be_bytes());
        wire.extend_from_slice(&rest);
        let _ = JobMessage::decode(&wire);
    }

    #[test]
    fn a_damaged_message_is_refused_or_decodes_to_a_valid_job(
        job in job(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut wire = job.encode();
        let i = at.index(wire.len());
        wire[i] = byte;
        if let Ok(back) = JobMessage::decode(&wire) {
            // Whatever decodes is a whole job: it round-trips from then on.
            prop_assert_eq!(JobMessage::decode(&back.encode()).unwrap(), back);
        }
        let cut = cut.index(wire.len());
        prop_assert!(JobMessage::decode(&job.encode()[..cut]).is_err());
    }
}

#[test]
fn an_unknown_version_is_named() {
    let event = Event::new("stripe", Identity::new("evt_1", "invoice.paid"), &b"{}"[..]);
    let mut wire = JobMessage::new(&event, "email", OffsetDateTime::UNIX_EPOCH).encode();
    wire[3] = WIRE_VERSION + 1;
    let err = JobMessage::decode(&wire).unwrap_err();
    assert!(
        matches!(err, DecodeError::UnsupportedVersion { found, supported } if found == WIRE_VERSION + 1 && supported == WIRE_VERSION)
    );
    assert!(err.to_string().contains("upgrade the workers"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Different (provider, event id, handler) triples never share a job key,
    /// and every key is a valid header value (printable ASCII).
    #[test]
    fn job_keys_are_distinct_and_header_safe(
        a in ("[a-z:%]{1,4}", "[a:%\\- é\\r\\n]{1,6}", "[b:% ]{1,4}"),
        b in ("[a-z:%]{1,4}", "[a:%\\- é\\r\\n]{1,6}", "[b:% ]{1,4}"),
    ) {
        let key = |(provider, id, handler): &(String, String, String)| {
            let event = Event::new(provider.clone(), Identity::new(id.clone(), "k"), &b""[..]);
            JobMessage::new(&event, handler, OffsetDateTime::UNIX_EPOCH).key().to_owned()
        };
        let (ka, kb) = (key(&a), key(&b));
        prop_assert_eq!(ka == kb, a == b);
        prop_assert!(ka.bytes().all(|c| c.is_ascii_graphic()), "{}", ka);
    }
}
