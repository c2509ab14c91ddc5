//! Entries on their way to the dead letter: one being sent ([`Outgoing`]),
//! and the orphans sent from a background task or by shutdown.

use std::sync::Arc;

use super::BestEffortRunner;
use crate::dead_letter::DeadLetterEntry;
use crate::pipeline::monitor::Count;
use crate::pipeline::recorder::Recorder;

/// An entry on its way to the dead letter, counted in `Pending::sending` by
/// whoever made it. If the future sending it is dropped mid-send, the entry
/// goes back to the orphans instead of vanishing.
pub(super) struct Outgoing {
    runner: Arc<BestEffortRunner>,
    entry: Option<DeadLetterEntry>,
}

impl Outgoing {
    /// An entry already counted in `Pending::sending`.
    pub(super) fn new(runner: &Arc<BestEffortRunner>, entry: DeadLetterEntry) -> Self {
        Self {
            runner: Arc::clone(runner),
            entry: Some(entry),
        }
    }

    /// Sends the entry; whether the dead letter took it.
    pub(super) async fn send(mut self) -> bool {
        let Some(entry) = self.entry.clone() else {
            return false;
        };
        let sent = self.runner.dead_letter_send(entry).await;
        self.entry = None;
        sent
    }
}

impl Drop for Outgoing {
    fn drop(&mut self) {
        let flush = {
            let mut pending = self.runner.pending();
            pending.sending -= 1;
            let flush = match self.entry.take() {
                Some(entry) => pending.push_orphan(entry),
                None => false,
            };
            if pending.settled() {
                self.runner.drained.notify_waiters();
            }
            flush
        };
        if flush {
            self.runner.flush_soon();
        }
    }
}

impl BestEffortRunner {
    /// Sends the orphans to the dead letter from a new task, when there is a
    /// runtime to run it; otherwise they wait for the next flush or shutdown.
    pub(super) fn flush_soon(self: &Arc<Self>) {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let runner = Arc::clone(self);
            // The task takes entries only once it runs: if the runtime drops it
            // unpolled, they stay with the orphans.
            drop(runtime.spawn(async move { runner.flush().await }));
        }
    }

    /// Sends the orphans to the dead letter, one at a time, until none is
    /// left or a shutdown sends them itself (it reports what it sends).
    async fn flush(self: &Arc<Self>) {
        loop {
            let entry = {
                let mut pending = self.pending();
                if pending.shutdowns > 0 {
                    return;
                }
                let Some(entry) = pending.take_orphan() else {
                    return;
                };
                entry
            };
            Outgoing::new(self, entry).send().await;
        }
    }

    pub(super) async fn dead_letter_send(&self, entry: DeadLetterEntry) -> bool {
        match self.dead_letter.send(entry).await {
            Ok(()) => {
                Recorder::bump(&self.stats.best_effort_dead_lettered);
                self.stats.monitor.count(Count::BestEffortDeadLettered, 1);
                true
            }
            Err(_) => {
                Recorder::bump(&self.stats.dead_letter_failures);
                self.stats.monitor.count(Count::BestEffortDeadLettered, 1);
                false
            }
        }
    }
}
