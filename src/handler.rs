//! Your code that reacts to an event.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::event::{Event, PayloadError};

/// A boxed error of any type, as handlers return them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Work done for an event: one job, one method.
///
/// A handler returns [`HandlerError::Transient`] when trying again later may
/// succeed (a database timeout) and [`HandlerError::Permanent`] when it cannot
/// (the order does not exist). A panic is caught by the pipeline and counts as a
/// transient failure.
///
/// Wrap an async closure with [`handler_fn`], or implement it on your own type
/// (with [`async_trait`](crate::async_trait), re-exported so you need no extra
/// dependency):
///
/// ```
/// use hookgate::{async_trait, Event, Handler, HandlerError};
/// use std::sync::atomic::{AtomicU64, Ordering};
///
/// /// Counts paid invoices; a real one would write to your database.
/// struct MarkInvoicePaid {
///     paid: AtomicU64,
/// }
///
/// #[derive(serde::Deserialize)]
/// struct InvoiceEvent {
///     data: Data,
/// }
/// #[derive(serde::Deserialize)]
/// struct Data {
///     object: Invoice,
/// }
/// #[derive(serde::Deserialize)]
/// struct Invoice {
///     id: String,
/// }
///
/// #[async_trait]
/// impl Handler for MarkInvoicePaid {
///     async fn handle(&self, event: &Event) -> Result<(), HandlerError> {
///         // A body that does not parse is a permanent failure (`?` converts it).
///         let invoice: InvoiceEvent = event.parse()?;
///         if invoice.data.object.id.is_empty() {
///             return Err(HandlerError::permanent("invoice without an id"));
///         }
///         // A database timeout would be `Err(HandlerError::transient(err))`.
///         self.paid.fetch_add(1, Ordering::Relaxed);
///         Ok(())
///     }
/// }
///
/// let handler = MarkInvoicePaid { paid: AtomicU64::new(0) };
/// let mut registry = hookgate::Registry::new();
/// registry.critical("stripe", "invoice.paid", "mark_invoice_paid", handler);
/// ```
///
/// `Arc<H>` and `Box<H>` (also `Box<dyn Handler>`) are handlers too.
///
/// The trait uses `async_trait` rather than a native `async fn` because the
/// registry keeps handlers as `Arc<dyn Handler>`: a trait whose method returns
/// `impl Future` cannot be made into a trait object. The cost is one boxed
/// future per call, a few tens of nanoseconds beside the work a handler does.
#[async_trait]
pub trait Handler: Send + Sync {
    /// Does the work for `event`.
    async fn handle(&self, event: &Event) -> Result<(), HandlerError>;
}

/// `Arc<H>` and `Box<H>` (also of `dyn Handler`) are handlers too.
macro_rules! forward_handler {
    ($($pointer:ident),*) => {$(
        #[async_trait]
        impl<H: Handler + ?Sized> Handler for $pointer<H> {
            async fn handle(&self, event: &Event) -> Result<(), HandlerError> {
                (**self).handle(event).await
            }
        }
    )*};
}

forward_handler!(Arc, Box);

// `Handler` stays dyn-compatible: the registry holds `Arc<dyn Handler>`.
const _: Option<&dyn Handler> = None;

/// A [`Handler`] made from an async closure; see [`handler_fn`].
#[derive(Clone)]
pub struct HandlerFn<F> {
    f: F,
}

/// Turns an async closure taking the [`Event`] (a cheap clone) into a [`Handler`].
///
/// ```
/// use hookgate::{handler_fn, Handler, HandlerError};
/// let grant_access = handler_fn(|event| async move {
///     let _course = event.json()?["data"]["object"]["metadata"]["course"].clone();
///     Ok::<(), HandlerError>(())
/// });
/// # fn is_handler(_: &impl Handler) {}
/// # is_handler(&grant_access);
/// ```
pub fn handler_fn<F, Fut>(f: F) -> HandlerFn<F>
where
    F: Fn(Event) -> Fut + Send + Sync,
    Fut: Future<Output = Result<(), HandlerError>> + Send,
{
    HandlerFn { f }
}

#[async_trait]
impl<F, Fut> Handler for HandlerFn<F>
where
    F: Fn(Event) -> Fut + Send + Sync,
    Fut: Future<Output = Result<(), HandlerError>> + Send,
{
    async fn handle(&self, event: &Event) -> Result<(), HandlerError> {
        (self.f)(event.clone()).await
    }
}

impl<F> fmt::Debug for HandlerFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HandlerFn")
    }
}

/// Why a handler failed, and whether trying again may help.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandlerError {
    /// Trying again later may succeed (timeouts, unavailable dependencies). A
    /// critical transient failure answers 500 so the provider retries; a
    /// best-effort one is retried by the [`RetryPolicy`](crate::RetryPolicy).
    #[error("transient failure: {0}")]
    Transient(#[source] BoxError),
    /// Trying again will not help (invalid data, a rejected business rule). Not
    /// retried; handled by the pipeline's permanent-failure policy or sent to the
    /// dead letter.
    #[error("permanent failure: {0}")]
    Permanent(#[source] BoxError),
}

impl HandlerError {
    /// A failure that may go away on a retry.
    pub fn transient(err: impl Into<BoxError>) -> Self {
        HandlerError::Transient(err.into())
    }

    /// A failure that a retry will not fix.
    pub fn permanent(err: impl Into<BoxError>) -> Self {
        HandlerError::Permanent(err.into())
    }

    /// Whether a retry may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, HandlerError::Transient(_))
    }
}

impl From<PayloadError> for HandlerError {
    /// A body that does not parse will not parse on a retry either: permanent.
    fn from(err: PayloadError) -> Self {
        HandlerError::Permanent(Box::new(err))
    }
}

/// A handler panicked; the pipeline caught the panic and treats it as a
/// transient failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the handler panicked: {message}")]
pub struct HandlerPanicked {
    /// The panic message, when it was a string.
    pub message: String,
}

impl HandlerPanicked {
    /// Reads the message out of a caught panic payload.
    #[cfg(feature = "tokio")]
    pub(crate) fn from_payload(payload: &(dyn std::any::Any + Send)) -> Self {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".to_owned());
        Self { message }
    }
}

/// A handler did not finish within its time limit and was cancelled; treated as
/// a transient failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the handler did not finish within {after:?} and was cancelled")]
pub struct HandlerTimedOut {
    /// The limit that was exceeded.
    pub after: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closure_handler_debugs_by_its_kind() {
        let handler = handler_fn(|_event| async { Ok::<(), HandlerError>(()) });
        assert_eq!(format!("{handler:?}"), "HandlerFn");
    }
}
