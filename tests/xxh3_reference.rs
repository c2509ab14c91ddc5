//! The xxh3 digests hookgate stores and compares (body fingerprints, the
//! memory store's key hashes, Twilio's parameter digests, RabbitMQ's long-key
//! message ids) come from `twox-hash`, which picks AVX2 at run time; they must
//! equal the reference xxh3 (`xxhash-rust`, the crate used before) bit for bit,
//! or fingerprints stored by an earlier version would read as changed bodies.

use std::hash::Hasher as _;

use hookgate::Fingerprint;
use proptest::prelude::*;

/// Lengths across every code path of xxh3: 0–16, 17–128, 129–240, and long
/// inputs (stripes, blocks, and the last partial stripe).
fn lengths() -> impl Strategy<Value = usize> {
    prop_oneof![
        0usize..=16,
        17usize..=128,
        129usize..=240,
        241usize..=4096,
        4097usize..=70_000
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn fingerprints_equal_the_reference_xxh3_128(
        len in lengths(),
        seed in any::<u8>(),
    ) {
        let body: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
        prop_assert_eq!(Fingerprint::of(&body).0, xxhash_rust::xxh3::xxh3_128(&body));
    }

    #[test]
    fn seeded_and_streamed_digests_equal_the_reference(
        len in lengths(),
        seed in any::<u64>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let bytes: Vec<u8> = (0..len).map(|i| (i as u64 ^ seed) as u8).collect();
        prop_assert_eq!(
            twox_hash::XxHash3_128::oneshot_with_seed(seed, &bytes),
            xxhash_rust::xxh3::xxh3_128_with_seed(&bytes, seed)
        );
        let split = if bytes.is_empty() { 0 } else { cut.index(bytes.len() + 1) };
        let (head, tail) = bytes.split_at(split);
        let mut h128 = twox_hash::XxHash3_128::new();
        h128.write(head);
        h128.write(tail);
        let mut h64 = twox_hash::XxHash3_64::new();
        h64.write(head);
        h64.write(tail);
        let mut reference = xxhash_rust::xxh3::Xxh3::new();
        reference.update(&bytes);
        prop_assert_eq!(h128.finish_128(), reference.digest128());
        prop_assert_eq!(h64.finish(), reference.digest());
    }
}

/// A value a stored fingerprint already holds: the digest of a known body
/// must never change between versions.
#[test]
fn a_known_fingerprint_is_unchanged() {
    assert_eq!(
        Fingerprint::of(b"{\"id\":\"evt_1\"}").0,
        xxhash_rust::xxh3::xxh3_128(b"{\"id\":\"evt_1\"}")
    );
    assert_eq!(
        Fingerprint::of(b"").0,
        0x99aa_06d3_0147_98d8_6001_c324_468d_497f
    );
}
