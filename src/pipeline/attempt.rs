//! One claimed attempt at an event: the key, its fencing token and answer
//! budget, how the attempt runs the critical handlers, and how it settles the
//! key.

use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::time::Instant;

use super::budget::{within, Budget};
use super::key::ClaimKey;
use super::limits::{PermanentFailurePolicy, ProviderLimits};
use super::observe;
use super::recorder::Recorder;
use super::Inner;
use crate::dead_letter::{DeadLetterEntry, DeadLetterReason};
use crate::event::Event;
use crate::handler::{HandlerError, HandlerPanicked};
use crate::outcome::{AnswerBudgetSpent, CriticalFailure, Outcome, OutcomeKind};
use crate::registry::{NamedHandler, Routes};
use crate::store::{FencingToken, StoreError, Watermark, WatermarkStore};

/// A claimed key, settled exactly once by the attempt that holds it.
pub(super) struct Attempt<'a> {
    pub(super) inner: &'a Inner,
    pub(super) key: ClaimKey,
    pub(super) token: FencingToken,
    pub(super) limits: &'a ProviderLimits,
    pub(super) budget: Budget<'a>,
    /// When the claim step ended, where it was timed: the critical
    /// handlers' time starts there instead of at one more clock read.
    pub(super) claimed_at: Option<Instant>,
}

impl Attempt<'_> {
    /// Frees the key so a retry runs the work again, within what is left of
    /// the answer budget. A failed or abandoned release is not reported: the
    /// lease expires on its own, and a stale token must not touch a newer
    /// attempt's claim (the store refuses it).
    pub(super) async fn release(&self, reason: &str) {
        let release = self.inner.store.release(&self.key, self.token, reason);
        let _ = within(|| self.budget.ends(), release).await;
    }

    /// Records the key as done within what is left of the answer budget; the
    /// outcome to answer when that fails or does not answer in time.
    pub(super) async fn complete(&self, handler: Arc<str>) -> Result<(), OutcomeKind> {
        let store = &self.inner.store;
        let (key, token, retention) = (&*self.key, self.token, self.limits.retention);
        let completed = match store.complete_now(key, token, retention) {
            Some(completed) => Some(completed),
            None => within(|| self.budget.ends(), store.complete(key, token, retention)).await,
        };
        let Some(completed) = completed else {
            // The store may still record it: no release (which could undo a
            // completion that lands after all, and would overrun the budget).
            // The retry finds the key completed, or leased until it expires.
            let spent = AnswerBudgetSpent::Complete(self.limits.answer_budget);
            return Err(OutcomeKind::StoreUnavailable(Arc::new(
                StoreError::unavailable(spent),
            )));
        };
        match completed {
            Ok(()) => Ok(()),
            Err(err @ StoreError::StaleToken { .. }) => Err(OutcomeKind::CriticalFailed {
                handler,
                failure: CriticalFailure::LeaseLost(Arc::new(err)),
            }),
            Err(err) => {
                // The store may be back for the release; if so the provider's retry
                // runs at once instead of waiting out the lease.
                self.release("completing the key failed").await;
                Err(OutcomeKind::StoreUnavailable(Arc::new(err)))
            }
        }
    }

    /// The ordering guard's check before the critical handlers, within the
    /// work budget: `Ok` when the event is not older than the newest one
    /// processed for `object`. A stale event completes the key and is
    /// answered [`OutcomeKind::Stale`]; a failing or slow store releases it.
    pub(super) async fn check_order(
        &self,
        watermarks: &dyn WatermarkStore,
        object: &str,
        at: Watermark,
    ) -> Result<(), OutcomeKind> {
        let read = within(|| self.budget.work_ends(), watermarks.watermark(object)).await;
        match self.watermark_answer(read).await? {
            Some(newest) if newest > at => {
                self.complete("(ordering guard)".into()).await?;
                Err(OutcomeKind::Stale { at, newest })
            }
            _ => Ok(()),
        }
    }

    /// Raises the watermark of `object` to `at` once the critical handlers
    /// succeeded, before the key is completed, within the answer budget.
    pub(super) async fn advance_order(
        &self,
        watermarks: &dyn WatermarkStore,
        object: &str,
        at: Watermark,
    ) -> Result<(), OutcomeKind> {
        let retention = self.limits.retention;
        let raised = within(
            || self.budget.ends(),
            watermarks.advance(object, at, retention),
        )
        .await;
        self.watermark_answer(raised).await.map(drop)
    }

    /// The watermark store's answer (`None`: not within the budget); when
    /// it failed or was late, releases the key and answers 503, so the
    /// provider's retry runs the work.
    async fn watermark_answer<T>(
        &self,
        answer: Option<Result<T, StoreError>>,
    ) -> Result<T, OutcomeKind> {
        let err = match answer {
            Some(Ok(value)) => return Ok(value),
            Some(Err(err)) => err,
            None => {
                StoreError::unavailable(AnswerBudgetSpent::Watermark(self.limits.answer_budget))
            }
        };
        self.release("the ordering watermark could not be read or raised")
            .await;
        Err(OutcomeKind::StoreUnavailable(Arc::new(err)))
    }

    /// Runs the critical handlers in order under the deadline (or what the
    /// budget leaves them), notes in `outcome` how many ran and for how long,
    /// and settles the failures; `Ok` (with the last handler run) means every
    /// handler succeeded and the key is still held.
    pub(super) async fn run_critical<'r>(
        &self,
        event: &Event,
        routes: Routes<'r>,
        outcome: &mut Outcome,
    ) -> Result<Option<&'r NamedHandler>, OutcomeKind> {
        let mut current = None;
        let mut started = 0;
        // A block, so that what only the chain needs is not kept across the
        // settling below (smaller futures).
        let failure = {
            let began = self.claimed_at.unwrap_or_else(Instant::now);
            let chain = async {
                for handler in routes.critical() {
                    current = Some(handler);
                    started += 1;
                    let run = AssertUnwindSafe(observe::handler(
                        handler.name(),
                        "critical",
                        1,
                        handler.handler().handle(event),
                    ));
                    match run.catch_unwind().await {
                        Ok(Ok(())) => {}
                        Ok(Err(err)) => return Err(Failure::Error(err)),
                        Err(panic) => {
                            return Err(Failure::Panic(HandlerPanicked::from_payload(&*panic)))
                        }
                    }
                }
                Ok(())
            };
            let ends = || self.budget.handlers_end(began);
            let finished = within(ends, pin!(chain)).await;
            outcome.critical_elapsed = Some(began.elapsed());
            match finished {
                Some(Ok(())) => None,
                Some(Err(failure)) => Some(failure),
                None => Some(Failure::Timeout(self.budget.handler_time(began))),
            }
        };
        outcome.critical_handlers = started;
        let Some(failure) = failure else {
            return Ok(current);
        };
        let handler = handler_name(current);
        let kind = match failure {
            Failure::Error(err) if !err.is_transient() => {
                return Err(self.settle_permanent(event, handler, err).await)
            }
            Failure::Error(err) => CriticalFailure::Transient(Arc::new(err)),
            Failure::Panic(panic) => CriticalFailure::Panic(panic.message),
            Failure::Timeout(after) => CriticalFailure::Timeout(after),
        };
        self.release(&failure_reason(&handler, &kind)).await;
        Err(OutcomeKind::CriticalFailed {
            handler,
            failure: kind,
        })
    }

    /// Settles a permanent failure as the policy says: released (answer 500),
    /// or dead-lettered then completed (answer 200).
    pub(super) async fn settle_permanent(
        &self,
        event: &Event,
        handler: Arc<str>,
        err: HandlerError,
    ) -> OutcomeKind {
        let inner = self.inner;
        let error = Arc::new(err);
        let reason = permanent_reason(&handler, &error);
        let failed = |dead_lettered| OutcomeKind::PermanentFailure {
            handler: handler.clone(),
            error: error.clone(),
            dead_lettered,
        };
        if inner.permanent_failure_policy == PermanentFailurePolicy::Retry {
            self.release(&reason).await;
            return failed(false);
        }
        // Dead-letter first, then complete: if completing fails the provider
        // retries, and the event is dead-lettered again rather than lost.
        let entry = DeadLetterEntry::new(
            event.clone(),
            handler.clone(),
            1,
            DeadLetterReason::CriticalPermanent,
            Some(error.clone()),
        );
        // Within the budget, before the settle reserve: a dead letter that does
        // not answer in time counts as refusing the entry.
        let sent = within(|| self.budget.work_ends(), inner.dead_letter.send(entry)).await;
        if !matches!(sent, Some(Ok(()))) {
            Recorder::bump(&inner.stats.dead_letter_failures);
            self.release(&reason).await;
            return failed(false);
        }
        match self.complete(handler.clone()).await {
            Ok(()) => failed(true),
            Err(kind) => kind,
        }
    }
}

/// The name an outcome gives for `handler` (the failing or last critical one).
pub(super) fn handler_name(handler: Option<&NamedHandler>) -> Arc<str> {
    handler.map_or_else(|| "(no critical handler)".into(), NamedHandler::shared_name)
}

enum Failure {
    Error(HandlerError),
    Panic(HandlerPanicked),
    /// The chain did not finish within the time it had.
    Timeout(Duration),
}

pub(super) fn failure_reason(handler: &str, failure: &CriticalFailure) -> String {
    match failure {
        CriticalFailure::Transient(err) => format!("critical handler `{handler}` failed: {err}"),
        CriticalFailure::Timeout(after) => {
            format!("critical handlers passed the {after:?} deadline in `{handler}`")
        }
        CriticalFailure::Panic(message) => {
            format!("critical handler `{handler}` panicked: {message}")
        }
        CriticalFailure::LeaseLost(err) => format!("lease lost: {err}"),
    }
}

fn permanent_reason(handler: &str, error: &HandlerError) -> String {
    format!("critical handler `{handler}` failed permanently: {error}")
}

/// What the journal and the logs say about why a delivery failed; `None`
/// when it did not. Never a body byte, a header value or a secret.
pub(super) fn describe(kind: &OutcomeKind) -> Option<String> {
    match kind {
        OutcomeKind::TooLarge { size, limit } => {
            Some(format!("body of {size} bytes over the {limit}-byte limit"))
        }
        OutcomeKind::VerificationFailed(err) => Some(err.to_string()),
        OutcomeKind::Unusable(err) => Some(err.to_string()),
        OutcomeKind::CriticalFailed { handler, failure } => Some(failure_reason(handler, failure)),
        OutcomeKind::PermanentFailure { handler, error, .. } => {
            Some(permanent_reason(handler, error))
        }
        OutcomeKind::StoreUnavailable(err) => Some(err.to_string()),
        OutcomeKind::Stale { at, newest } => Some(format!(
            "stale: an event of the same object at {newest} was already processed; this one is at {at}"
        )),
        OutcomeKind::FingerprintMismatch => {
            Some("the event id was completed with a different body".to_owned())
        }
        _ => None,
    }
}
