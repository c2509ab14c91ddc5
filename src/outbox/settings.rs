//! [`OutboxSettings`]: where the outbox lives and how relays claim from it.

use std::time::Duration;

use crate::retry::{RetryPolicy, RetryPolicyError};
use crate::store::durable::validate_table_name;

/// The default outbox table name (the dead-letter table adds `_dead`).
pub const DEFAULT_TABLE: &str = "hookgate_outbox";

/// Settings of a durable outbox: plain fields, each documented with its
/// default. Start from [`OutboxSettings::default`].
///
/// ```
/// use hookgate::outbox::OutboxSettings;
/// use std::time::Duration;
/// let mut settings = OutboxSettings::default();
/// settings.table = "webhook_jobs".to_owned();
/// settings.lease = Duration::from_secs(120);
/// assert_eq!(settings.check(&hookgate::RetryPolicy::default()), Ok(()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OutboxSettings {
    /// The outbox table; the dead-letter table is `{table}_dead`. An
    /// identifier of 1 to 43 ASCII letters, digits or underscores (PostgreSQL:
    /// optionally `schema.` qualified); it is spliced into SQL, so nothing
    /// else is accepted. Defaults to [`DEFAULT_TABLE`].
    pub table: String,
    /// How long a relay holds a job it claimed; must be longer than the retry
    /// policy's `attempt_timeout`, so that an attempt always ends before its
    /// lease and no other relay can start the job meanwhile. A job whose relay
    /// died is claimed again when its lease ends. Defaults to 60 s.
    pub lease: Duration,
    /// How long [`Relay::run`](super::Relay::run) waits before looking again
    /// when it found no due job (or the database failed). Defaults to 500 ms.
    pub poll_interval: Duration,
    /// How many jobs one relay claims and runs at once. Defaults to 32.
    pub batch_size: usize,
}

impl Default for OutboxSettings {
    fn default() -> Self {
        Self {
            table: DEFAULT_TABLE.to_owned(),
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_millis(500),
            batch_size: 32,
        }
    }
}

/// Outbox settings that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxConfigError {
    /// The table name is not a plain identifier (or too long).
    #[error("outbox table name `{0}` is not a plain identifier of at most 43 characters (letters, digits, `_`)")]
    InvalidTableName(String),
    /// The lease is not longer than an attempt may take.
    #[error("the outbox lease ({lease:?}) must be longer than the retry policy's attempt_timeout ({attempt_timeout:?}), or two relays could run one job at once")]
    LeaseNotLongerThanAttempt {
        /// The lease.
        lease: Duration,
        /// The retry policy's attempt timeout.
        attempt_timeout: Duration,
    },
    /// A setting that must be positive is zero.
    #[error("the outbox's `{0}` must be greater than zero")]
    Zero(&'static str),
    /// The retry policy cannot work.
    #[error(transparent)]
    RetryPolicy(#[from] RetryPolicyError),
}

/// Longest outbox table name: leaves room for `_dead` and index suffixes
/// within the store's identifier limit.
const MAX_OUTBOX_TABLE: usize = 43;

impl OutboxSettings {
    /// Checks these settings with the retry policy the relays run jobs
    /// under; the pipeline builder and [`Relay`](super::Relay) constructors
    /// run it.
    ///
    /// # Errors
    /// The first setting that cannot work.
    pub fn check(&self, policy: &RetryPolicy) -> Result<(), OutboxConfigError> {
        policy.check()?;
        check_table(&self.table, true)?;
        if self.batch_size == 0 {
            return Err(OutboxConfigError::Zero("batch_size"));
        }
        if self.poll_interval.is_zero() {
            return Err(OutboxConfigError::Zero("poll_interval"));
        }
        if self.lease <= policy.attempt_timeout {
            return Err(OutboxConfigError::LeaseNotLongerThanAttempt {
                lease: self.lease,
                attempt_timeout: policy.attempt_timeout,
            });
        }
        Ok(())
    }
}

/// Checks an outbox table name (`allow_schema`: PostgreSQL's `schema.table`).
pub(crate) fn check_table(name: &str, allow_schema: bool) -> Result<(), OutboxConfigError> {
    let unqualified = name.rsplit('.').next().unwrap_or(name);
    if validate_table_name(name, allow_schema).is_err() || unqualified.len() > MAX_OUTBOX_TABLE {
        return Err(OutboxConfigError::InvalidTableName(name.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_that_cannot_work_are_refused_by_name() {
        let policy = RetryPolicy::default();
        assert_eq!(OutboxSettings::default().check(&policy), Ok(()));
        let short = OutboxSettings {
            lease: policy.attempt_timeout,
            ..OutboxSettings::default()
        };
        assert_eq!(
            short.check(&policy),
            Err(OutboxConfigError::LeaseNotLongerThanAttempt {
                lease: policy.attempt_timeout,
                attempt_timeout: policy.attempt_timeout,
            })
        );
        let empty = OutboxSettings {
            batch_size: 0,
            ..OutboxSettings::default()
        };
        assert_eq!(
            empty.check(&policy),
            Err(OutboxConfigError::Zero("batch_size"))
        );
        let busy = OutboxSettings {
            poll_interval: Duration::ZERO,
            ..OutboxSettings::default()
        };
        assert_eq!(
            busy.check(&policy),
            Err(OutboxConfigError::Zero("poll_interval"))
        );
        let broken = RetryPolicy {
            max_attempts: 0,
            ..policy
        };
        assert!(matches!(
            OutboxSettings::default().check(&broken),
            Err(OutboxConfigError::RetryPolicy(_))
        ));
    }

    #[test]
    fn table_names_leave_room_for_the_dead_letter_suffix() {
        assert_eq!(check_table(&"t".repeat(43), false), Ok(()));
        assert!(check_table(&"t".repeat(44), false).is_err());
        assert_eq!(check_table("app.jobs", true), Ok(()));
        assert!(check_table("app.jobs", false).is_err());
    }
}
