//! The baseline every bench group measures against: the bare HMAC-SHA256 of the
//! same signed bytes.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The signing secret of every bench delivery.
pub const SECRET: &str = "whsec_benchmark_secret_0123456789abcdef";

/// HMAC-SHA256 keyed with [`SECRET`], ready to be cloned per message.
pub fn keyed() -> Hmac<Sha256> {
    <Hmac<Sha256> as Mac>::new_from_slice(SECRET.as_bytes()).expect("any key length works")
}

/// Bare HMAC-SHA256 of `parts` with a keyed-once state, compared in constant time.
pub fn bare_hmac(keyed: &Hmac<Sha256>, parts: &[&[u8]], expected: &[u8; 32]) -> bool {
    let mut mac = keyed.clone();
    for part in parts {
        mac.update(part);
    }
    let tag: [u8; 32] = mac.finalize().into_bytes().into();
    bool::from(tag.ct_eq(expected))
}

/// The expected tag of `parts` under [`SECRET`].
pub fn tag(parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = keyed();
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}
