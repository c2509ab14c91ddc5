//! `Event`: what a handler reads of a verified delivery.

use hookgate::{Event, Identity};
use time::OffsetDateTime;

#[test]
fn an_event_hands_out_its_identity_and_key() {
    let at = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
    let identity = Identity::new("wh-1", "orders/create")
        .occurred_at(Some(at))
        .with_metadata("shop_domain", "a.myshopify.com")
        .with_metadata("event_id", "ev-9")
        .with_metadata("event_id", "ev-10");
    let event = Event::new("shopify", identity, &b"{}"[..]);
    assert_eq!(event.occurred_at(), Some(at));
    assert_eq!(
        event.metadata("event_id"),
        Some("ev-9"),
        "the first value of the name"
    );
    assert_eq!(event.metadata("shop_domain"), Some("a.myshopify.com"));
    assert_eq!(event.metadata("topic"), None);
    assert_eq!(event.key(), "shopify:wh-1");
    assert_eq!(
        (event.provider(), event.id(), event.kind()),
        ("shopify", "wh-1", "orders/create")
    );

    let bare = Event::new("stripe", Identity::new("evt_1", "x"), &b"{}"[..]);
    assert_eq!(bare.occurred_at(), None);
    assert_eq!(bare.metadata("event_id"), None);
}
