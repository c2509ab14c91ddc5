//! The claim rule of the idempotency protocol: the one place that says what a
//! claim of a stored key answers. Every store reads the key's record, asks
//! [`decide`], and on [`Decision::Take`] writes a new lease and answers with
//! [`acquired`]. Stores that must decide on their server for atomicity
//! (PostgreSQL's `ON CONFLICT … WHERE`, Redis' Lua script) repeat only
//! [`takes`] there, and still classify the answer here.
//!
//! The rule: the fingerprint guards **completed** keys only. Providers re-render
//! an event between attempts (API-version changes, live counts such as Stripe's
//! `pending_webhooks`), so a released key or an expired lease is taken by the
//! next claim whatever its body, and that body's fingerprint is stored.

use std::time::SystemTime;

use super::{Claim, FencingToken, Fingerprint};

/// Where a stored key stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// An attempt holds the key until its lease ends.
    Leased,
    /// The last attempt failed; the next claim takes the key.
    Released,
    /// The critical work succeeded; the key is kept until its retention ends.
    Completed,
}

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
impl State {
    /// Every state, in the order of their stored texts.
    pub(crate) const ALL: [State; 3] = [State::Leased, State::Released, State::Completed];

    /// The state as stored in SQL columns and Redis hashes.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            State::Leased => "leased",
            State::Released => "released",
            State::Completed => "completed",
        }
    }

    /// The state stored as `text` for `key`; anything else is
    /// [`StoreError::Corrupt`](super::StoreError::Corrupt).
    pub(crate) fn parse(key: &str, text: &str) -> Result<Self, super::StoreError> {
        State::ALL
            .into_iter()
            .find(|state| state.as_str() == text)
            .ok_or_else(|| super::StoreError::Corrupt {
                key: key.to_owned(),
                reason: format!("unknown state `{text}`"),
            })
    }
}

/// A stored key as a claim sees it, with `expired` decided by whichever clock
/// the store trusts (the server's, where there is one).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Record {
    /// The fingerprint of the body that last claimed the key.
    pub(crate) fingerprint: Fingerprint,
    /// Where the key stands.
    pub(crate) state: State,
    /// When the lease or the retention ends (unused for a released key).
    pub(crate) expires_at: SystemTime,
    /// Whether `expires_at` has passed.
    pub(crate) expired: bool,
}

/// What a claim of a stored key comes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// The claim takes the key with a new token; answer with [`acquired`].
    Take,
    /// The claim takes nothing and answers this.
    Answer(Claim),
}

/// Whether a claim takes a key in `state`, `expired` or not: a released key, an
/// expired lease, or a completed key past its retention. The body plays no
/// part; the stores that decide on their server repeat exactly this.
pub(crate) fn takes(state: State, expired: bool) -> bool {
    state == State::Released || expired
}

/// The claim rule: what a claim with `fingerprint` of the stored `record` comes
/// to. An unexpired lease is [`Claim::InFlight`] whatever the body; a retained
/// completed key is [`Claim::Completed`], or [`Claim::CompletedBodyChanged`]
/// for another body; everything else is taken.
pub(crate) fn decide(record: &Record, fingerprint: Fingerprint) -> Decision {
    if takes(record.state, record.expired) {
        return Decision::Take;
    }
    Decision::Answer(match record.state {
        State::Completed if record.fingerprint == fingerprint => Claim::Completed,
        State::Completed => Claim::CompletedBodyChanged,
        State::Leased | State::Released => Claim::InFlight {
            until: record.expires_at,
        },
    })
}

/// The answer of a claim with `fingerprint` that took the key with `token`,
/// `previous` being the record it replaced (`None` for a new key):
/// [`Claim::AcquiredBodyChanged`] when a released key or an expired lease
/// last claimed with another body was taken, else [`Claim::Acquired`]. A
/// completed key past its retention is new again, whatever its body.
pub(crate) fn acquired(
    previous: Option<&Record>,
    fingerprint: Fingerprint,
    token: FencingToken,
) -> Claim {
    match previous {
        Some(record) if record.state != State::Completed && record.fingerprint != fingerprint => {
            Claim::AcquiredBodyChanged(token)
        }
        _ => Claim::Acquired(token),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    const STORED: Fingerprint = Fingerprint(7);
    const OTHER: Fingerprint = Fingerprint(8);
    const TOKEN: FencingToken = FencingToken(4);

    fn until() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_000)
    }

    /// What a claim with `fingerprint` of a key in `state` answers, as a store
    /// answers it: through `decide`, then `acquired` when the key was taken.
    fn claim(state: State, expired: bool, fingerprint: Fingerprint) -> Claim {
        let record = Record {
            fingerprint: STORED,
            state,
            expires_at: until(),
            expired,
        };
        match decide(&record, fingerprint) {
            Decision::Take => acquired(Some(&record), fingerprint, TOKEN),
            Decision::Answer(answer) => answer,
        }
    }

    #[test]
    fn the_claim_rule_covers_every_state_expiry_and_body() {
        use State::{Completed, Leased, Released};
        let in_flight = Claim::InFlight { until: until() };
        let table = [
            // An unexpired lease is in flight whatever the body.
            (Leased, false, STORED, in_flight),
            (Leased, false, OTHER, in_flight),
            // An expired lease is taken; another body is reported.
            (Leased, true, STORED, Claim::Acquired(TOKEN)),
            (Leased, true, OTHER, Claim::AcquiredBodyChanged(TOKEN)),
            // A released key is taken, expired or not; another body is reported.
            (Released, false, STORED, Claim::Acquired(TOKEN)),
            (Released, false, OTHER, Claim::AcquiredBodyChanged(TOKEN)),
            (Released, true, STORED, Claim::Acquired(TOKEN)),
            (Released, true, OTHER, Claim::AcquiredBodyChanged(TOKEN)),
            // A retained completed key is a duplicate; another body is reported.
            (Completed, false, STORED, Claim::Completed),
            (Completed, false, OTHER, Claim::CompletedBodyChanged),
            // Past retention the key is new again, whatever its body.
            (Completed, true, STORED, Claim::Acquired(TOKEN)),
            (Completed, true, OTHER, Claim::Acquired(TOKEN)),
        ];
        for (state, expired, fingerprint, expected) in table {
            assert_eq!(
                claim(state, expired, fingerprint),
                expected,
                "{state:?}, expired: {expired}, same body: {}",
                fingerprint == STORED
            );
            assert_eq!(
                takes(state, expired),
                expected.token().is_some(),
                "{state:?}, expired: {expired}"
            );
        }
    }

    #[test]
    fn a_new_key_is_acquired_whatever_its_body() {
        assert_eq!(acquired(None, OTHER, TOKEN), Claim::Acquired(TOKEN));
    }

    #[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
    #[test]
    fn states_round_trip_through_their_stored_text() {
        for state in State::ALL {
            assert_eq!(State::parse("k", state.as_str()).ok(), Some(state));
        }
        assert_eq!(
            State::ALL.map(State::as_str),
            ["leased", "released", "completed"]
        );
        for bad in ["done", "", "Leased", "leased "] {
            assert!(
                matches!(
                    State::parse("k", bad),
                    Err(super::super::StoreError::Corrupt { ref key, ref reason })
                        if key == "k" && reason.contains("unknown state")
                ),
                "{bad:?}"
            );
        }
    }
}
