//! `Stats` snapshots: deliveries count every answered delivery once, and
//! snapshots of several instances add up field by field, saturating.

use hookgate::Stats;

/// A snapshot whose every counter holds a distinct power of two, so a sum
/// that drops, repeats or mixes up a counter shows in the result.
fn distinct() -> Stats {
    let mut s = Stats::default();
    // The sixteen answered-delivery counters first (bits 0..=15), then every
    // other counter: each field gets a bit of its own, so a sum that takes a
    // field twice, or a wrong one, shows.
    let fields: [&mut u64; 29] = [
        &mut s.too_large,
        &mut s.bad_request,
        &mut s.unauthorized,
        &mut s.verifier_unavailable,
        &mut s.unusable,
        &mut s.duplicate,
        &mut s.fingerprint_mismatch,
        &mut s.in_flight,
        &mut s.ignored,
        &mut s.handshake,
        &mut s.stale,
        &mut s.processed,
        &mut s.critical_failed,
        &mut s.permanent_failure,
        &mut s.store_unavailable,
        &mut s.shutting_down,
        &mut s.best_effort_succeeded,
        &mut s.best_effort_retries,
        &mut s.best_effort_dead_lettered,
        &mut s.best_effort_overflow,
        &mut s.best_effort_dropped,
        &mut s.dead_letter_failures,
        &mut s.best_effort_pending,
        &mut s.rejected_hook_panics,
        &mut s.body_changed,
        &mut s.duplicate_body_changed,
        &mut s.replays,
        &mut s.journal_written,
        &mut s.journal_dropped,
    ];
    for (bit, field) in fields.into_iter().enumerate() {
        *field = 1 << bit;
    }
    s
}

#[test]
fn deliveries_add_up_the_sixteen_answer_counters() {
    // Bits 0..=15 are the answered deliveries; the best-effort counters, the
    // gauge, hook panics, body changes, replays (counted in `duplicate`
    // already) and the journal counters are not.
    assert_eq!(distinct().deliveries(), (1 << 16) - 1);
    assert_eq!(Stats::default().deliveries(), 0);
    let mut one = Stats::default();
    one.processed = 7;
    assert_eq!(one.deliveries(), 7);
}

#[test]
fn snapshots_add_field_by_field() {
    let a = distinct();
    let sum = a + a;
    assert_eq!(sum.too_large, 2);
    assert_eq!(sum.replays, 2 << 26);
    assert_eq!(sum.journal_dropped, 2 << 28);
    assert_eq!(sum.deliveries(), 2 * a.deliveries());

    let mut only = Stats::default();
    only.best_effort_pending = 5;
    let added = a + only;
    assert_eq!(added.best_effort_pending, a.best_effort_pending + 5);
    assert_eq!(added.too_large, a.too_large);
    assert_eq!(added.deliveries(), a.deliveries());

    let mut assigned = a;
    assigned += a;
    assert_eq!(assigned, sum);
    assert_eq!(a + Stats::default(), a);
    assert_eq!(Stats::default() + a, a);
}

#[test]
fn sums_over_many_snapshots_match_repeated_addition() {
    let a = distinct();
    let mut b = Stats::default();
    b.processed = 3;
    b.in_flight = 4;
    let total: Stats = [a, b, a].into_iter().sum();
    assert_eq!(total, a + b + a);
    assert_eq!(total.processed, 2 * a.processed + 3);
    assert_eq!(total.in_flight, 2 * a.in_flight + 4);
    assert_eq!(total.replays, 2 * a.replays);
    let none: Stats = std::iter::empty().sum();
    assert_eq!(none, Stats::default());
    let single: Stats = [b].into_iter().sum();
    assert_eq!(single, b);
}

#[test]
fn sums_saturate_instead_of_overflowing() {
    let mut full = Stats::default();
    full.processed = u64::MAX - 1;
    full.best_effort_retries = u64::MAX;
    let total = full + distinct();
    assert_eq!(total.processed, u64::MAX);
    assert_eq!(total.best_effort_retries, u64::MAX);
    assert_eq!(total.too_large, 1, "other fields still add");
    let summed: Stats = [full, full, full].into_iter().sum();
    assert_eq!(summed.processed, u64::MAX);
}
