//! Metric keys made once per distinct label set and kept for the life of
//! the process, so that recording a delivery's metrics neither allocates nor
//! hashes: `metrics::counter!` with owned label values builds a `String` per
//! label, a `Vec` per key and the key's hash on every call, even when no
//! recorder is installed.
//!
//! The label values are provider names, handler names and outcome names: a
//! set fixed by the pipelines a process builds, so what is kept is bounded
//! by it (a few small keys per distinct combination).

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};

use metrics::{Key, Label, Level, Metadata};

/// The metadata every hookgate metric is registered with.
static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// The duration histograms of a delivery, in the order of [`DeliveryKeys::seconds`].
pub(super) const SECONDS: [&str; 4] = [
    "hookgate_delivery_duration_seconds",
    "hookgate_verify_duration_seconds",
    "hookgate_claim_duration_seconds",
    "hookgate_critical_duration_seconds",
];

/// The keys of one delivery's metrics, for one provider and outcome.
pub(super) struct DeliveryKeys {
    /// `hookgate_deliveries_total{provider, outcome}`.
    pub(super) deliveries: Key,
    /// The [`SECONDS`] histograms, `{provider}`.
    pub(super) seconds: [Key; 4],
}

/// Values made once per `(name, tag)` pair and kept for the process: by a
/// provider or handler name, then by an outcome or result name. Looked up by
/// `&str`, so a hit allocates nothing.
type Interned<V> = Mutex<HashMap<Box<str>, HashMap<&'static str, &'static V>>>;

/// The value of `name` and `tag` in `interned`, made by `make` the first time
/// any thread asks for it.
fn intern<V>(
    interned: &'static OnceLock<Interned<V>>,
    name: &str,
    tag: &'static str,
    make: impl FnOnce() -> V,
) -> &'static V {
    let mut interned = interned
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(value) = interned.get(name).and_then(|by_tag| by_tag.get(tag)) {
        return value;
    }
    let value: &'static V = Box::leak(Box::new(make()));
    interned
        .entry(Box::from(name))
        .or_default()
        .insert(tag, value);
    value
}

fn leak_labels(pairs: &[(&'static str, &str)]) -> &'static [Label] {
    Box::leak(
        pairs
            .iter()
            .map(|&(name, value)| Label::new(name, value.to_owned()))
            .collect::<Box<[Label]>>(),
    )
}

/// The delivery keys of `provider` and `outcome`, made the first time any
/// thread asks for them.
fn made(provider: &str, outcome: &'static str) -> &'static DeliveryKeys {
    static MADE: OnceLock<Interned<DeliveryKeys>> = OnceLock::new();
    intern(&MADE, provider, outcome, || {
        let counted = leak_labels(&[("provider", provider), ("outcome", outcome)]);
        let timed = leak_labels(&[("provider", provider)]);
        DeliveryKeys {
            deliveries: Key::from_static_labels("hookgate_deliveries_total", counted),
            seconds: SECONDS.map(|name| Key::from_static_labels(name, timed)),
        }
    })
}

/// One entry of a thread's cache: the address and length of a provider
/// name, the address of an outcome name, and their keys.
type Cached = (usize, usize, usize, &'static DeliveryKeys);

thread_local! {
    /// This thread's recent delivery keys. A hit is checked against the names
    /// themselves (an address can be reused once a pipeline is gone).
    static CACHED: RefCell<Vec<Cached>> = const { RefCell::new(Vec::new()) };
}

/// The most entries a thread's cache holds (a few providers × the outcomes
/// they see); past it, the oldest entry makes room.
const CACHED_MAX: usize = 64;

/// The delivery keys of `provider` and `outcome`, without locking,
/// allocating or hashing once this thread has used them.
pub(super) fn delivery_keys(provider: &str, outcome: &'static str) -> &'static DeliveryKeys {
    let slot = (
        provider.as_ptr() as usize,
        provider.len(),
        outcome.as_ptr() as usize,
    );
    let same = |keys: &DeliveryKeys| {
        let labels = keys.deliveries.labels().map(Label::value);
        labels.eq([provider, outcome])
    };
    CACHED.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(&(.., keys)) = cache
            .iter()
            .find(|&&(p, l, o, keys)| (p, l, o) == slot && same(keys))
        {
            return keys;
        }
        let keys = made(provider, outcome);
        if cache.len() == CACHED_MAX {
            cache.remove(0);
        }
        cache.push((slot.0, slot.1, slot.2, keys));
        keys
    })
}

/// The key `hookgate_best_effort_jobs_total{handler, result}`.
pub(super) fn job_key(handler: &str, result: &'static str) -> &'static Key {
    static MADE: OnceLock<Interned<Key>> = OnceLock::new();
    intern(&MADE, handler, result, || {
        let labels = leak_labels(&[("handler", handler), ("result", result)]);
        Key::from_static_labels("hookgate_best_effort_jobs_total", labels)
    })
}

/// Adds `n` to the counter `key`.
pub(super) fn count(key: &Key, n: u64) {
    metrics::with_recorder(|recorder| recorder.register_counter(key, &METADATA)).increment(n);
}

/// Records `value` in the histogram `key`.
pub(super) fn record(key: &Key, value: f64) {
    metrics::with_recorder(|recorder| recorder.register_histogram(key, &METADATA)).record(value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(key: &Key) -> Vec<(&str, &str)> {
        key.labels().map(|l| (l.key(), l.value())).collect()
    }

    #[test]
    fn delivery_keys_are_made_once_and_name_their_labels() {
        let first = delivery_keys("stripe", "processed");
        let again = delivery_keys("stripe", "processed");
        assert!(std::ptr::eq(first, again));
        assert_eq!(first.deliveries.name(), "hookgate_deliveries_total");
        assert_eq!(
            labels(&first.deliveries),
            [("provider", "stripe"), ("outcome", "processed")]
        );
        for (key, name) in first.seconds.iter().zip(SECONDS) {
            assert_eq!(key.name(), name);
            assert_eq!(labels(key), [("provider", "stripe")]);
        }
        assert!(!std::ptr::eq(first, delivery_keys("stripe", "duplicate")));
        let job = job_key("email", "succeeded");
        assert_eq!(job.name(), "hookgate_best_effort_jobs_total");
        assert_eq!(labels(job), [("handler", "email"), ("result", "succeeded")]);
        assert!(std::ptr::eq(job, job_key("email", "succeeded")));
    }

    #[test]
    fn the_cache_of_a_thread_never_answers_for_another_name_at_the_same_address() {
        let mut name = String::from("github");
        let github = delivery_keys(&name, "processed");
        assert_eq!(labels(&github.deliveries)[0], ("provider", "github"));
        // The same buffer, now holding another name of the same length.
        name.replace_range(.., "gitlab");
        let gitlab = delivery_keys(&name, "processed");
        assert_eq!(
            labels(&gitlab.deliveries),
            [("provider", "gitlab"), ("outcome", "processed")]
        );
        assert_eq!(labels(&gitlab.seconds[0]), [("provider", "gitlab")]);
    }

    #[test]
    fn a_full_cache_makes_room_and_still_answers() {
        let names: Vec<String> = (0..CACHED_MAX + 8).map(|n| format!("p{n}")).collect();
        for name in &names {
            assert_eq!(
                labels(&delivery_keys(name, "ignored").deliveries)[0].1,
                name
            );
        }
        CACHED.with(|cache| assert_eq!(cache.borrow().len(), CACHED_MAX));
        assert_eq!(
            labels(&delivery_keys(&names[0], "ignored").deliveries)[0].1,
            "p0"
        );
    }
}
