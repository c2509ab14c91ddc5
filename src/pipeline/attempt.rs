//! One claimed attempt at an event: the key, its fencing token, and how the
//! attempt settles it.

use std::sync::Arc;

use super::limits::ProviderLimits;
use super::Inner;
use crate::outcome::{CriticalFailure, OutcomeKind};
use crate::store::{FencingToken, StoreError};

/// A claimed key, settled exactly once by the attempt that holds it.
pub(super) struct Attempt<'a> {
    pub(super) inner: &'a Inner,
    pub(super) key: String,
    pub(super) token: FencingToken,
    pub(super) limits: ProviderLimits,
}

impl Attempt<'_> {
    /// Frees the key so a retry runs the work again. A failed release is not
    /// reported: the lease expires on its own, and a stale token must not touch a
    /// newer attempt's claim (the store refuses it).
    pub(super) async fn release(&self, reason: &str) {
        let _ = self
            .inner
            .store
            .release(&self.key, self.token, reason)
            .await;
    }

    /// Records the key as done; the outcome to answer when that fails.
    pub(super) async fn complete(&self, handler: Arc<str>) -> Result<(), OutcomeKind> {
        match self
            .inner
            .store
            .complete(&self.key, self.token, self.limits.retention)
            .await
        {
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
