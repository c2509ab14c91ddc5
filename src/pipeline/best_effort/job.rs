//! One job: the work of one best-effort handler for one event, as a future
//! that runs its attempts and settles itself.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use futures_util::future::BoxFuture;
use futures_util::FutureExt;

use super::table::{Enter, Settled, Settlement};
use super::BestEffortRunner;
use crate::dead_letter::DeadLetterReason;
use crate::event::Event;
use crate::handler::{HandlerError, HandlerPanicked, HandlerTimedOut};
use crate::pipeline::observe;
use crate::registry::NamedHandler;

/// How one job ended, for its [`BestEffortReport`](super::BestEffortReport).
pub(super) enum End {
    Succeeded,
    DeadLettered,
    DeadLetterRefused,
    /// Cancelled by shutdown, which sends (or sent) its entry.
    Abandoned,
}

/// The future of one job. Each poll first asks the pending table whether the
/// job may go on (see `table.rs`); dropping it unsettled hands its work to
/// the dead letter.
pub(super) struct Job {
    runner: Arc<BestEffortRunner>,
    id: u64,
    stage: Stage,
}

enum Stage {
    /// Running attempts (or waiting for a permit, or sleeping before a retry).
    Attempts(BoxFuture<'static, Settled>),
    /// Failed: sending the entry to the dead letter.
    Sending(BoxFuture<'static, bool>),
    /// Returned its [`End`].
    Done,
}

impl Job {
    pub(super) fn new(
        runner: &Arc<BestEffortRunner>,
        id: u64,
        event: Event,
        handler: NamedHandler,
    ) -> Self {
        Self {
            runner: Arc::clone(runner),
            id,
            stage: Stage::Attempts(attempts(Arc::clone(runner), id, event, handler).boxed()),
        }
    }
}

impl Future for Job {
    type Output = End;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<End> {
        let this = &mut *self;
        loop {
            match &mut this.stage {
                Stage::Attempts(attempts) => {
                    let settled = match this.runner.enter(this.id, cx.waker()) {
                        Enter::Settled => {
                            this.stage = Stage::Done;
                            return Poll::Ready(End::Abandoned);
                        }
                        Enter::Cancelled => Settled::Cancelled,
                        Enter::Run => match attempts.as_mut().poll(cx) {
                            Poll::Ready(settled) => settled,
                            Poll::Pending => {
                                this.runner.leave(this.id);
                                return Poll::Pending;
                            }
                        },
                    };
                    // The handler's future is dropped before the job leaves
                    // the table: once its entry is visible, nothing of the
                    // attempt runs any more.
                    this.stage = Stage::Done;
                    match this.runner.settle(this.id, settled) {
                        Settlement::Succeeded => return Poll::Ready(End::Succeeded),
                        Settlement::Abandoned => return Poll::Ready(End::Abandoned),
                        Settlement::Send(outgoing) => {
                            this.stage = Stage::Sending(outgoing.send().boxed());
                        }
                    }
                }
                Stage::Sending(send) => {
                    let sent = ready!(send.as_mut().poll(cx));
                    this.stage = Stage::Done;
                    return Poll::Ready(if sent {
                        End::DeadLettered
                    } else {
                        End::DeadLetterRefused
                    });
                }
                // Only `JoinAll` and tokio tasks poll a job, and neither polls
                // a finished future again.
                Stage::Done => return Poll::Pending,
            }
        }
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if matches!(self.stage, Stage::Attempts(_)) {
            // The handler's future goes first, as when the job settles itself.
            self.stage = Stage::Done;
            self.runner.orphan_job(self.id);
        }
        // A `Sending` stage hands its entry back itself (see `Outgoing`).
    }
}

/// Runs the attempts of one job: the first, then retries with backoff, until
/// one succeeds, one fails permanently, the policy's attempts run out, or
/// shutdown cancels the work.
async fn attempts(
    runner: Arc<BestEffortRunner>,
    id: u64,
    event: Event,
    handler: NamedHandler,
) -> Settled {
    let policy = runner.policy;
    for attempt in 1..=policy.max_attempts {
        let result = {
            // The semaphore is never closed, so acquiring only waits.
            let _permit = runner.permits.acquire().await;
            if !runner.begin_attempt(id) {
                return Settled::Cancelled;
            }
            let run = AssertUnwindSafe(observe::handler(
                handler.name(),
                "best_effort",
                attempt,
                handler.handler().handle(&event),
            ))
            .catch_unwind();
            tokio::time::timeout(policy.attempt_timeout, run).await
        };
        let error = match result {
            Ok(Ok(Ok(()))) => return Settled::Succeeded,
            Ok(Ok(Err(err))) => err,
            Ok(Err(panic)) => HandlerError::transient(HandlerPanicked::from_payload(&*panic)),
            Err(_) => HandlerError::transient(HandlerTimedOut {
                after: policy.attempt_timeout,
            }),
        };
        let permanent = !error.is_transient();
        runner.record_error(id, &Arc::new(error));
        if permanent {
            return Settled::Failed(DeadLetterReason::Permanent);
        }
        if attempt < policy.max_attempts {
            tokio::time::sleep(policy.delay(attempt, runner.unit())).await;
        }
    }
    Settled::Failed(DeadLetterReason::RetriesExhausted)
}
