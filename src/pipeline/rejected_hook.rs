//! The host's hook for authentic deliveries the pipeline refused.

use std::fmt;
use std::sync::Arc;

use crate::rejected::RejectedDelivery;

/// The host's hook for rejected deliveries; see
/// [`PipelineBuilder::on_rejected`](crate::PipelineBuilder::on_rejected).
#[derive(Clone)]
pub(super) struct RejectedHook(Arc<dyn Fn(RejectedDelivery) + Send + Sync>);

impl RejectedHook {
    pub(super) fn new(hook: impl Fn(RejectedDelivery) + Send + Sync + 'static) -> Self {
        Self(Arc::new(hook))
    }

    /// Calls the hook; a panic in it is caught so it cannot change the answer.
    pub(super) fn call(&self, rejected: RejectedDelivery) -> bool {
        let hook = &self.0;
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(rejected))).is_ok()
    }
}

impl fmt::Debug for RejectedHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RejectedHook")
    }
}
