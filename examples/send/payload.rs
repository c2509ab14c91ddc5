//! What each provider sends: the JSON body of an event in the provider's shape,
//! with ids unique to this run, padded to a size with filler the provider would
//! really send (a push's commits, an order's line items).

use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The providers the sender imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// Stripe event notifications.
    Stripe,
    /// GitHub webhooks.
    GitHub,
    /// Shopify webhooks.
    Shopify,
}

impl Provider {
    /// The provider named `name` (as in the receiver's routes).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "stripe" => Some(Self::Stripe),
            "github" => Some(Self::GitHub),
            "shopify" => Some(Self::Shopify),
            _ => None,
        }
    }

    /// The provider's route name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Stripe => "stripe",
            Self::GitHub => "github",
            Self::Shopify => "shopify",
        }
    }

    /// The event kind sent when `--kind` is not given.
    pub fn default_kind(self) -> &'static str {
        match self {
            Self::Stripe => "checkout.session.completed",
            Self::GitHub => "push",
            Self::Shopify => "orders/create",
        }
    }

    /// The environment variable holding the secret (the one examples/server.rs reads).
    pub fn secret_env(self) -> &'static str {
        match self {
            Self::Stripe => "STRIPE_WEBHOOK_SECRET",
            Self::GitHub => "GITHUB_WEBHOOK_SECRET",
            Self::Shopify => "SHOPIFY_WEBHOOK_SECRET",
        }
    }

    /// The secret examples/server.rs uses when its environment has none.
    pub fn demo_secret(self) -> &'static str {
        match self {
            Self::Stripe => "whsec_hookgate_demo",
            Self::GitHub => "github_hookgate_demo",
            Self::Shopify => "shopify_hookgate_demo",
        }
    }
}

/// The ids of one event, unique to this run: a fresh run never collides with
/// the events an earlier run left in the receiver's store.
#[derive(Debug, Clone, Copy)]
pub struct EventIds {
    run: u64,
    seq: u64,
}

impl EventIds {
    /// The ids of event number `seq` of the run `run`.
    pub fn new(run: u64, seq: u64) -> Self {
        Self { run, seq }
    }

    /// A pseudo-random word derived from the event and `salt`.
    fn word(self, salt: u64) -> u64 {
        mix(mix(self.run ^ salt) ^ self.seq)
    }

    /// A Stripe-style id: `prefix` then 24 base62 characters.
    pub fn stripe(self, prefix: &str, salt: u64) -> String {
        format!(
            "{prefix}{}{}",
            base62(self.word(salt)),
            base62(mix(self.run) ^ self.seq)
        )
    }

    /// A UUID-shaped id (version 4 layout), as GitHub and Shopify send.
    pub fn uuid(self, salt: u64) -> String {
        let (a, b) = (self.word(salt), self.word(salt ^ 0x5555));
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | ((b >> 48) & 0x3fff),
            b & 0xffff_ffff_ffff
        )
    }

    /// A 40-digit hex id, like a git SHA-1.
    fn sha(self, salt: u64) -> String {
        let (a, b) = (self.word(salt), self.word(salt ^ 0xaaaa));
        format!("{a:016x}{b:016x}{:08x}", self.word(salt ^ 0xf0f0) >> 32)
    }

    /// A numeric id in Shopify's range.
    fn number(self, salt: u64) -> u64 {
        450_000_000_000_000_000 + self.word(salt) % 500_000_000_000_000_000
    }

    /// This event's Shopify webhook id (its deduplication key).
    pub fn shopify_webhook_id(self) -> String {
        self.uuid(1)
    }

    /// This event's Shopify event id.
    pub fn shopify_event_id(self) -> String {
        self.uuid(2)
    }

    /// This event's GitHub delivery GUID.
    pub fn github_delivery(self) -> String {
        self.uuid(3)
    }
}

/// splitmix64's finalizer: a bijection of `u64` that scatters bits.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// `x` as twelve base62 digits (62¹² > 2⁶⁴, so every `u64` fits).
fn base62(mut x: u64) -> String {
    const DIGITS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = [b'0'; 12];
    for digit in out.iter_mut().rev() {
        *digit = DIGITS[(x % 62) as usize];
        x /= 62;
    }
    out.iter().map(|&b| b as char).collect()
}

/// The JSON body of one event of `kind`, padded to about `size` bytes.
pub fn body(
    provider: Provider,
    kind: &str,
    ids: EventIds,
    at: OffsetDateTime,
    size: Option<usize>,
) -> Vec<u8> {
    let (value, filler) = match provider {
        Provider::Stripe => stripe_event(kind, ids, at),
        Provider::GitHub => github_event(kind, ids, at),
        Provider::Shopify => shopify_order(ids, at),
    };
    pad(value, filler, size.unwrap_or(0))
}

/// Makes filler item number `n` carrying `text`.
type MakeItem = Box<dyn Fn(usize, &str) -> Value>;

/// Where a body's filler goes: an array at `pointer`, filled with items made
/// by `item(n, text)`, each carrying up to `max_text` bytes of text.
struct Filler {
    pointer: &'static str,
    max_text: usize,
    item: MakeItem,
}

/// Serializes `value`, first appending filler items until it is about `target`
/// bytes: exactly, except that a body is never shorter than its bare event and
/// the first item may overshoot a small target by its own fixed part.
fn pad(mut value: Value, filler: Filler, target: usize) -> Vec<u8> {
    const TEXT: &str = "Leave the parcel at the side door and ring twice; \
        the gift wrap should be plain, and please include the receipt. ";
    // Long enough for an item's text plus the room an item's fixed part takes.
    let text: String = TEXT.repeat((2 * filler.max_text + 4096) / TEXT.len() + 1);
    let mut len = json_len(&value);
    let Some(array) = value
        .pointer_mut(filler.pointer)
        .and_then(Value::as_array_mut)
    else {
        unreachable!(
            "every body shape has its filler array at {}",
            filler.pointer
        );
    };
    let mut n = array.len();
    let mut last_text_len = None;
    while len < target {
        let room = target - len;
        let separator = usize::from(!array.is_empty());
        let bare = json_len(&(filler.item)(n, "")) + separator;
        match last_text_len {
            // Too little room for another item: lengthen the last one's text.
            Some(last) if room < bare && last + room <= text.len() => {
                array.pop();
                array.push((filler.item)(n - 1, &text[..last + room]));
                len += room;
            }
            _ => {
                let text_len = room.saturating_sub(bare).min(filler.max_text);
                array.push((filler.item)(n, &text[..text_len]));
                last_text_len = Some(text_len);
                len += bare + text_len;
                n += 1;
            }
        }
    }
    // A `Value` always serializes: its map keys are strings.
    serde_json::to_vec(&value).unwrap_or_default()
}

fn json_len(value: &Value) -> usize {
    serde_json::to_vec(value).map_or(0, |bytes| bytes.len())
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

/// A Stripe event (API version 2025-07-30) whose `data.object` is the object
/// its type names (`checkout.session` for `checkout.session.completed`).
fn stripe_event(kind: &str, ids: EventIds, at: OffsetDateTime) -> (Value, Filler) {
    let object = kind.rsplit_once('.').map_or(kind, |(object, _)| object);
    let prefix = match object {
        "checkout.session" => "cs_test_",
        "payment_intent" => "pi_",
        "invoice" => "in_",
        "customer" => "cus_",
        "customer.subscription" => "sub_",
        "charge" => "ch_",
        _ => "obj_",
    };
    let event = json!({
        "id": ids.stripe("evt_", 10),
        "object": "event",
        "api_version": "2025-07-30.basil",
        "created": at.unix_timestamp(),
        "data": {
            "object": {
                "id": ids.stripe(prefix, 11),
                "object": object,
                "amount_total": 5900,
                "currency": "usd",
                "customer": ids.stripe("cus_", 12),
                "livemode": false,
                "metadata": { "order_id": ids.seq.to_string() },
                "mode": "payment",
                "payment_status": "paid",
                "status": "complete",
                "line_items": { "object": "list", "data": [], "has_more": false },
            }
        },
        "livemode": false,
        "pending_webhooks": 1,
        "request": { "id": null, "idempotency_key": null },
        "type": kind,
    });
    let filler = Filler {
        pointer: "/data/object/line_items/data",
        max_text: 480,
        item: Box::new(move |n, text| {
            json!({
                "id": ids.stripe("li_", 100 + n as u64),
                "object": "item",
                "amount_subtotal": 1900,
                "amount_total": 1900,
                "currency": "usd",
                "description": text,
                "quantity": 1,
            })
        }),
    };
    (event, filler)
}

/// A GitHub payload: a push for `push`, else the event's action (`issues.opened`
/// sends action `opened`) on a repository.
fn github_event(kind: &str, ids: EventIds, at: OffsetDateTime) -> (Value, Filler) {
    let (event, action) = github_event_and_action(kind);
    let repository = json!({
        "id": 1_296_269,
        "node_id": "MDEwOlJlcG9zaXRvcnkxMjk2MjY5",
        "name": "hello-world",
        "full_name": "octo-org/hello-world",
        "private": false,
        "owner": { "login": "octo-org", "id": 6_811_672, "type": "Organization" },
        "html_url": "https://github.com/octo-org/hello-world",
        "default_branch": "main",
    });
    let sender = json!({ "login": "octocat", "id": 583_231, "type": "User" });
    let timestamp = rfc3339(at);
    if event != "push" {
        let mut payload = json!({ "repository": repository, "sender": sender, "labels": [] });
        if let Some(action) = action {
            payload["action"] = json!(action);
        }
        let filler = Filler {
            pointer: "/labels",
            max_text: 100,
            item: Box::new(
                |n, text| json!({ "id": 208_045_946 + n, "name": format!("label-{n}"), "color": "f29513", "description": text }),
            ),
        };
        return (payload, filler);
    }
    let commit = move |n: usize, message: &str| {
        let id = ids.sha(200 + n as u64);
        json!({
            "id": id,
            "tree_id": ids.sha(300 + n as u64),
            "distinct": true,
            "message": message,
            "timestamp": timestamp,
            "url": format!("https://github.com/octo-org/hello-world/commit/{id}"),
            "author": { "name": "Mona Octocat", "email": "mona@github.com", "username": "octocat" },
            "committer": { "name": "GitHub", "email": "noreply@github.com", "username": "web-flow" },
            "added": [],
            "removed": [],
            "modified": ["src/lib.rs"],
        })
    };
    let head = commit(0, "Fix the checkout total");
    let (before, after) = (ids.sha(20), ids.sha(200));
    let payload = json!({
        "ref": "refs/heads/main",
        "before": before,
        "after": after,
        "repository": repository,
        "pusher": { "name": "octocat", "email": "mona@github.com" },
        "sender": sender,
        "created": false,
        "deleted": false,
        "forced": false,
        "compare": format!("https://github.com/octo-org/hello-world/compare/{}...{}", &before[..12], &after[..12]),
        "commits": [head.clone()],
        "head_commit": head,
    });
    let filler = Filler {
        pointer: "/commits",
        max_text: 2000,
        item: Box::new(commit),
    };
    (payload, filler)
}

/// The `X-GitHub-Event` of a kind, and the `action` its body carries.
pub fn github_event_and_action(kind: &str) -> (&str, Option<&str>) {
    match kind.split_once('.') {
        Some((event, action)) => (event, Some(action)),
        None => (kind, None),
    }
}

/// A Shopify order (every topic gets the order's shape, which is what the
/// `orders/*` topics send).
fn shopify_order(ids: EventIds, at: OffsetDateTime) -> (Value, Filler) {
    let id = ids.number(30);
    let created_at = rfc3339(at);
    let order = json!({
        "id": id,
        "admin_graphql_api_id": format!("gid://shopify/Order/{id}"),
        "name": format!("#{}", 1000 + ids.seq),
        "order_number": 1000 + ids.seq,
        "email": "jon@example.com",
        "created_at": created_at,
        "updated_at": created_at,
        "currency": "USD",
        "financial_status": "paid",
        "fulfillment_status": null,
        "subtotal_price": "59.00",
        "total_price": "59.00",
        "total_tax": "0.00",
        "line_items": [],
        "shipping_address": { "city": "Ottawa", "country_code": "CA", "zip": "K2P 1L4" },
    });
    let filler = Filler {
        pointer: "/line_items",
        max_text: 480,
        item: Box::new(move |n, text| {
            json!({
                "id": ids.number(400 + n as u64),
                "admin_graphql_api_id": format!("gid://shopify/LineItem/{}", ids.number(400 + n as u64)),
                "title": "Aviator sunglasses",
                "sku": format!("SKU-{n:04}"),
                "quantity": 1,
                "price": "19.00",
                "properties": [{ "name": "Gift note", "value": text }],
            })
        }),
    };
    (order, filler)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_padded_to_about_the_size() {
        let at = OffsetDateTime::UNIX_EPOCH;
        for provider in [Provider::Stripe, Provider::GitHub, Provider::Shopify] {
            let kind = provider.default_kind();
            let bare = body(provider, kind, EventIds::new(1, 2), at, None).len();
            println!("{provider:?}: {bare} bytes unpadded");
            for size in [1024, 16384, 1 << 20] {
                let body = body(provider, kind, EventIds::new(1, 2), at, Some(size));
                let expected = size.max(bare);
                let len = body.len();
                assert!(len.abs_diff(expected) < 64, "{provider:?} {size}: {len}");
                serde_json::from_slice::<Value>(&body).unwrap();
            }
        }
    }
}
