//! `MemoryDeadLetter`: its limits, exactly at and one over.

use bytes::Bytes;
use hookgate::{DeadLetter, DeadLetterEntry, DeadLetterReason, Event, Identity, MemoryDeadLetter};

fn entry(body: Bytes) -> DeadLetterEntry {
    let event = Event::new("stripe", Identity::new("evt_1", "x"), body);
    DeadLetterEntry::new(
        event,
        "email".into(),
        1,
        DeadLetterReason::RetriesExhausted,
        None,
    )
}

#[tokio::test]
async fn bodies_fill_the_byte_limit_exactly_and_not_one_byte_more() {
    let dead_letter = MemoryDeadLetter::with_limits(10, 100);
    assert!(dead_letter.is_empty());
    dead_letter
        .send(entry(Bytes::from(vec![b'a'; 60])))
        .await
        .unwrap();
    assert!(!dead_letter.is_empty());
    dead_letter
        .send(entry(Bytes::from(vec![b'b'; 40])))
        .await
        .expect("exactly at the limit");
    assert_eq!((dead_letter.len(), dead_letter.bytes()), (2, 100));
    dead_letter
        .send(entry(Bytes::from_static(b"c")))
        .await
        .expect_err("one byte over");
    dead_letter
        .send(entry(Bytes::new()))
        .await
        .expect("an empty body still fits");
    assert_eq!(dead_letter.len(), 3);
}

#[tokio::test]
async fn the_default_holds_256_mib_of_bodies() {
    assert_eq!(MemoryDeadLetter::DEFAULT_MAX_BYTES, 256 * 1024 * 1024);
    let dead_letter = MemoryDeadLetter::new();
    // Zeroed pages: cheap to allocate, never touched.
    let full = Bytes::from(vec![0u8; MemoryDeadLetter::DEFAULT_MAX_BYTES]);
    dead_letter
        .send(entry(full))
        .await
        .expect("exactly the default limit");
    dead_letter
        .send(entry(Bytes::from_static(b"x")))
        .await
        .expect_err("one byte over");
    let small = MemoryDeadLetter::with_capacity(3);
    small
        .send(entry(Bytes::from(vec![
            0u8;
            MemoryDeadLetter::DEFAULT_MAX_BYTES
        ])))
        .await
        .unwrap();
    small
        .send(entry(Bytes::from_static(b"x")))
        .await
        .expect_err("the default byte limit");
}
