//! A durable outbox for best-effort work (features `postgres` and `sqlite`).
//!
//! By default best-effort work lives in the process that answered the
//! delivery: a restart after the 200 loses whatever was still pending. With
//! an outbox ([`PipelineBuilder::outbox`](crate::PipelineBuilder::outbox)),
//! the best-effort jobs of an event (one per matching best-effort handler)
//! are written as rows **in the same transaction that completes the event's
//! key**, in the idempotency store's database: the key is completed with its
//! jobs recorded, or neither. A [`Relay`] then claims due rows, runs each
//! job's handler under the pipeline's [`RetryPolicy`](crate::RetryPolicy)
//! (backoff with jitter between attempts) and settles it: succeeded, retried
//! later, or moved to the dead-letter table `{table}_dead` once its attempts
//! are exhausted or it failed permanently.
//!
//! ```text
//!  delivery ─► claim key ─► critical handlers ─► ┌ one transaction ─────────────┐
//!                                                │ complete key (fenced)        │
//!                                                │ transactional handlers' rows │
//!                                                │ INSERT outbox jobs           │
//!                                                └ COMMIT ──────────────────────┘
//!                                                          │
//!        relay A ─┐  claim due rows (lease, token)         ▼
//!        relay B ─┼─────────────────────────────►  {table}: pending ─► succeeded
//!        relay C ─┘  run handler, settle (fenced)          └────────► {table}_dead
//! ```
//!
//! # What each piece guarantees
//! - **Enqueue**: a job exists exactly once per job key (`{event key}/{handler}`)
//!   iff the event's key was completed; a delivery whose transaction rolled
//!   back enqueues nothing.
//! - **Claim**: a relay claims due rows with a lease and a new claim token
//!   per attempt (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so relays never wait
//!   on each other's rows; SQLite: one `UPDATE … RETURNING` under the write
//!   lock). A row is claimable again only when its lease has ended, so no two
//!   relays run a job at the same time as long as an attempt ends before its
//!   lease: the lease must be longer than the retry policy's
//!   `attempt_timeout`, which cuts every attempt off (checked when building).
//! - **Settle**: success, retry and dead letter are fenced by the claim
//!   token: a relay whose lease ran out cannot settle the newer attempt's
//!   claim. Each job reaches exactly one terminal state — `succeeded` in the
//!   outbox table, or one row in the dead-letter table.
//! - **Crash and restart**: a relay killed mid-job leaves its rows leased;
//!   when the lease ends any relay claims them again. Nothing is lost. The
//!   handler of a job whose relay died after the handler's effect but before
//!   its settle runs again: **handler effects are at-least-once**; make them
//!   idempotent by the job key ([`Event::key`](crate::Event::key) plus the
//!   handler's name) where a repeat matters. An attempt started counts
//!   towards `max_attempts`, even when its relay died.
//!
//! Not covered: an event's identity metadata
//! ([`Identity::metadata`](crate::Identity::metadata)) is not stored, so the
//! relay's events carry none; the pipeline's [`DeadLetter`](crate::DeadLetter)
//! sink and best-effort statistics are not used (the dead-letter table is the
//! outbox's dead letter).

mod job;
#[cfg(feature = "postgres")]
mod postgres;
mod relay;
mod settings;
#[cfg(feature = "sqlite")]
mod sqlite;
mod tables;

pub(crate) use job::Job;
pub use relay::{Relay, RelayRound};
pub use settings::{OutboxConfigError, OutboxSettings, DEFAULT_TABLE};
pub(crate) use tables::OutboxTables;
