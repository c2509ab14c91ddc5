//! The answer budget of one delivery, and [`within`]: a step bounded by it
//! that costs nothing when it does not have to wait.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use super::limits::ProviderLimits;

/// One delivery's answer budget: when `handle` started, and the provider's
/// limits. The instants it ends at are worked out only when a step has to
/// wait; `None` is an instant too far away for the clock to hold (no end).
#[derive(Debug, Clone, Copy)]
pub(super) struct Budget<'a> {
    started: Instant,
    limits: &'a ProviderLimits,
}

impl<'a> Budget<'a> {
    /// The budget of a delivery `handle` started on at `started`.
    pub(super) fn new(started: Instant, limits: &'a ProviderLimits) -> Self {
        Self { started, limits }
    }

    /// When the answer is due: the end for completing or releasing the key.
    pub(super) fn ends(&self) -> Option<Instant> {
        self.started.checked_add(self.limits.answer_budget)
    }

    /// When the claim and the critical handlers must be done, so that the
    /// settle reserve is left for completing the key.
    pub(super) fn work_ends(&self) -> Option<Instant> {
        let work = self
            .limits
            .answer_budget
            .saturating_sub(self.limits.settle_reserve);
        self.started.checked_add(work)
    }

    /// When critical handlers that began at `began` must be done: after their
    /// deadline, or sooner when the budget leaves less before the reserve.
    pub(super) fn handlers_end(&self, began: Instant) -> Option<Instant> {
        let deadline = began.checked_add(self.limits.critical_deadline);
        match (deadline, self.work_ends()) {
            (Some(deadline), Some(work_ends)) => Some(deadline.min(work_ends)),
            (deadline, work_ends) => deadline.or(work_ends),
        }
    }

    /// The time critical handlers that began at `began` get.
    pub(super) fn handler_time(&self, began: Instant) -> Duration {
        self.handlers_end(began)
            .map_or(self.limits.critical_deadline, |end| {
                end.saturating_duration_since(began)
            })
    }
}

/// Runs `op` until the instant `ends` gives (`None`: no end): resolves to
/// `None` if `op` had not finished by then, and `op` is dropped where it
/// stood. An `op` that is ready at its first poll (the in-memory store,
/// handlers that never wait) is taken even past the end, and costs neither
/// the time arithmetic nor a timer: both are done (and the timer boxed, so
/// that the futures holding this one stay small) only once `op` has to wait.
/// Pin a future that is not `Unpin` first (`within(ends, pin!(op))`).
#[inline]
pub(super) fn within<F, E>(ends: E, op: F) -> Within<F, E>
where
    F: Future + Unpin,
    E: FnOnce() -> Option<Instant> + Unpin,
{
    Within {
        op,
        timer: Timer::Unset(ends),
    }
}

/// The future of [`within`].
pub(super) struct Within<F, E> {
    op: F,
    timer: Timer<E>,
}

/// The timer of a [`Within`]: not needed yet, not needed at all, or running.
enum Timer<E> {
    Unset(E),
    Never,
    Armed(Pin<Box<Sleep>>),
}

impl<F, E> Future for Within<F, E>
where
    F: Future + Unpin,
    E: FnOnce() -> Option<Instant> + Unpin,
{
    type Output = Option<F::Output>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let Poll::Ready(output) = Pin::new(&mut this.op).poll(cx) {
            return Poll::Ready(Some(output));
        }
        if let Timer::Unset(_) = this.timer {
            if let Timer::Unset(ends) = std::mem::replace(&mut this.timer, Timer::Never) {
                if let Some(ends) = ends() {
                    this.timer = Timer::Armed(Box::pin(tokio::time::sleep_until(ends)));
                }
            }
        }
        match &mut this.timer {
            Timer::Armed(timer) => timer.as_mut().poll(cx).map(|()| None),
            Timer::Unset(_) | Timer::Never => Poll::Pending,
        }
    }
}
