//! Metric keys whose label sets are made once per distinct value and kept
//! for the life of the process, so that recording a delivery's metrics
//! allocates nothing: `metrics::counter!` with owned label values builds a
//! `String` per label and a `Vec` per key on every call, even when no
//! recorder is installed.
//!
//! The label values are provider names, handler names and outcome names: a
//! set fixed by the pipelines a process builds, so what is kept is bounded
//! by it (one small slice per distinct combination).

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};

use metrics::{Key, Label, Level, Metadata};

/// The metadata every hookgate metric is registered with.
static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// Every label set made so far, by its `(name, value)` pairs.
type Interned = HashMap<Vec<(&'static str, Box<str>)>, &'static [Label]>;

fn interned() -> &'static Mutex<Interned> {
    static INTERNED: OnceLock<Mutex<Interned>> = OnceLock::new();
    INTERNED.get_or_init(Mutex::default)
}

/// The label set of these `(name, value)` pairs, made the first time it is
/// asked for.
pub(super) fn labels(pairs: &[(&'static str, &str)]) -> &'static [Label] {
    let key: Vec<(&'static str, Box<str>)> = pairs
        .iter()
        .map(|&(name, value)| (name, Box::from(value)))
        .collect();
    let mut interned = interned().lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(labels) = interned.get(&key) {
        return labels;
    }
    let labels: &'static [Label] = Box::leak(
        pairs
            .iter()
            .map(|&(name, value)| Label::new(name, value.to_owned()))
            .collect::<Box<[Label]>>(),
    );
    interned.insert(key, labels);
    labels
}

/// A thread's cache: the address and length of a provider name and the
/// address of an outcome name, to the label set made for them.
type ByProvider = HashMap<(usize, usize, usize), &'static [Label]>;

thread_local! {
    /// This thread's recent `{provider}` / `{provider, outcome}` sets, by the
    /// provider name's address and length and the outcome name's address; a
    /// hit is checked against the name itself (an address can be reused once
    /// a pipeline is gone).
    static BY_PROVIDER: RefCell<ByProvider> = RefCell::new(HashMap::new());
}

/// The set `{provider}`, or `{provider, outcome}` when `outcome` is given,
/// without locking or allocating once this thread has used it.
pub(super) fn provider_labels(provider: &str, outcome: Option<&'static str>) -> &'static [Label] {
    let slot = (
        provider.as_ptr() as usize,
        provider.len(),
        outcome.map_or(0, |o| o.as_ptr() as usize),
    );
    let same = |labels: &[Label]| {
        labels.first().is_some_and(|l| l.value() == provider)
            && labels.get(1).map(Label::value) == outcome
    };
    BY_PROVIDER.with(|cache| {
        if let Some(labels) = cache.borrow().get(&slot).copied().filter(|l| same(l)) {
            return labels;
        }
        let labels = match outcome {
            Some(outcome) => labels(&[("provider", provider), ("outcome", outcome)]),
            None => labels(&[("provider", provider)]),
        };
        cache.borrow_mut().insert(slot, labels);
        labels
    })
}

/// Adds `n` to the counter `name` with `labels`.
pub(super) fn count(name: &'static str, labels: &'static [Label], n: u64) {
    let key = Key::from_static_labels(name, labels);
    metrics::with_recorder(|recorder| recorder.register_counter(&key, &METADATA)).increment(n);
}

/// Records `value` in the histogram `name` with `labels`.
pub(super) fn record(name: &'static str, labels: &'static [Label], value: f64) {
    let key = Key::from_static_labels(name, labels);
    metrics::with_recorder(|recorder| recorder.register_histogram(&key, &METADATA)).record(value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_set_is_made_once_and_names_its_values() {
        let first = labels(&[("provider", "stripe"), ("outcome", "processed")]);
        let again = labels(&[("provider", "stripe"), ("outcome", "processed")]);
        assert!(std::ptr::eq(first, again));
        let pairs: Vec<(&str, &str)> = first.iter().map(|l| (l.key(), l.value())).collect();
        assert_eq!(pairs, [("provider", "stripe"), ("outcome", "processed")]);
        let other = labels(&[("provider", "stripe"), ("outcome", "duplicate")]);
        assert!(!std::ptr::eq(first, other));
    }

    #[test]
    fn the_cache_of_a_thread_never_answers_for_another_name_at_the_same_address() {
        let mut name = String::from("github");
        let github = provider_labels(&name, Some("processed"));
        assert_eq!(github[0].value(), "github");
        // The same buffer, now holding another name of the same length.
        name.replace_range(.., "gitlab");
        let gitlab = provider_labels(&name, Some("processed"));
        assert_eq!(gitlab[0].value(), "gitlab");
        assert_eq!(gitlab[1].value(), "processed");
        let bare = provider_labels(&name, None);
        assert_eq!(bare.len(), 1);
        assert_eq!(bare[0].value(), "gitlab");
    }
}
