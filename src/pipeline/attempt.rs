//! One claimed attempt at an event: the key, its fencing token, the answer
//! budget it runs under, and how the attempt settles the key.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use super::limits::ProviderLimits;
use super::Inner;
use crate::outcome::{AnswerBudgetSpent, CriticalFailure, OutcomeKind};
use crate::store::{FencingToken, StoreError};

/// When one delivery's answer budget ends, counted from the start of `handle`.
/// An instant too far away for the clock to hold is `None`: no end.
#[derive(Debug, Clone, Copy)]
pub(super) struct Budget {
    /// When the answer is due: the end for completing or releasing the key.
    pub(super) ends: Option<Instant>,
    /// When the claim and the critical handlers must be done, so that the
    /// settle reserve is left for completing the key.
    pub(super) work_ends: Option<Instant>,
}

impl Budget {
    /// The budget of a delivery `handle` started on at `started`.
    pub(super) fn new(started: Instant, limits: &ProviderLimits) -> Self {
        let work = limits.answer_budget.saturating_sub(limits.settle_reserve);
        Self {
            ends: started.checked_add(limits.answer_budget),
            work_ends: started.checked_add(work),
        }
    }

    /// The time the critical handlers get from `now`: `deadline`, or less when
    /// the budget leaves less before the settle reserve.
    pub(super) fn handler_time(&self, now: Instant, deadline: Duration) -> Duration {
        self.work_ends.map_or(deadline, |ends| {
            deadline.min(ends.saturating_duration_since(now))
        })
    }
}

/// Runs `op` until `ends` (`None`: no end): resolves to `None` if `op` had not
/// finished by then, and `op` is dropped where it stood. An `op` that is ready
/// at its first poll (the in-memory store, handlers that never wait) is taken
/// even past `ends`, and costs no timer: the timer is made (and boxed, so that
/// the futures holding this one stay small) only once `op` has to wait. Pin a
/// future that is not `Unpin` first (`within(ends, pin!(op))`).
pub(super) fn within<F: Future + Unpin>(ends: Option<Instant>, op: F) -> Within<F> {
    Within {
        op,
        ends,
        timer: None,
    }
}

/// The future of [`within`].
pub(super) struct Within<F> {
    op: F,
    ends: Option<Instant>,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<F: Future + Unpin> Future for Within<F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let Poll::Ready(output) = Pin::new(&mut this.op).poll(cx) {
            return Poll::Ready(Some(output));
        }
        let Some(ends) = this.ends else {
            return Poll::Pending;
        };
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(ends)));
        timer.as_mut().poll(cx).map(|()| None)
    }
}

/// A claimed key, settled exactly once by the attempt that holds it.
pub(super) struct Attempt<'a> {
    pub(super) inner: &'a Inner,
    pub(super) key: String,
    pub(super) token: FencingToken,
    pub(super) limits: &'a ProviderLimits,
    pub(super) budget: Budget,
}

impl Attempt<'_> {
    /// Frees the key so a retry runs the work again, within what is left of
    /// the answer budget. A failed or abandoned release is not reported: the
    /// lease expires on its own, and a stale token must not touch a newer
    /// attempt's claim (the store refuses it).
    pub(super) async fn release(&self, reason: &str) {
        let release = self.inner.store.release(&self.key, self.token, reason);
        let _ = within(self.budget.ends, release).await;
    }

    /// Records the key as done within what is left of the answer budget; the
    /// outcome to answer when that fails or does not answer in time.
    pub(super) async fn complete(&self, handler: Arc<str>) -> Result<(), OutcomeKind> {
        let complete = self
            .inner
            .store
            .complete(&self.key, self.token, self.limits.retention);
        let Some(completed) = within(self.budget.ends, complete).await else {
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
}
