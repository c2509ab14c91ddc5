//! One fetch per certificate URL at a time: deliveries that arrive while a
//! URL is being fetched wait for that fetch and share its result, instead of
//! each asking the source again.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use futures_util::lock::Mutex as AsyncMutex;

use crate::verify::VerifyError;

/// The fetches under way, by URL.
#[derive(Debug, Default)]
pub(super) struct Flights {
    under_way: Mutex<HashMap<Box<str>, Arc<Flight>>>,
}

/// One URL's fetch: its result once it finished.
#[derive(Debug, Default)]
struct Flight {
    result: AsyncMutex<Option<Result<(), VerifyError>>>,
}

impl Flights {
    /// Runs `load` for `url` unless a fetch of `url` is under way, whose
    /// result is then shared. A fetch that is dropped unfinished (its
    /// delivery ran out of time) leaves the next waiter to run its own.
    pub(super) async fn run<F>(&self, url: &str, load: F) -> Result<(), VerifyError>
    where
        F: Future<Output = Result<(), VerifyError>>,
    {
        let flight = {
            let mut under_way = self.under_way.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(under_way.entry(url.into()).or_default())
        };
        let _landed = Landed {
            flights: self,
            url,
            flight: &flight,
        };
        let mut result = flight.result.lock().await;
        if let Some(shared) = &*result {
            return shared.clone();
        }
        let loaded = load.await;
        *result = Some(loaded.clone());
        loaded
    }

    /// How many URLs are being fetched.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.under_way
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

/// Forgets a flight once its first caller is done with it (finished or
/// dropped): later deliveries find the certificate cached, or fetch anew.
struct Landed<'a> {
    flights: &'a Flights,
    url: &'a str,
    flight: &'a Arc<Flight>,
}

impl Drop for Landed<'_> {
    fn drop(&mut self) {
        let mut under_way = self
            .flights
            .under_way
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if under_way
            .get(self.url)
            .is_some_and(|held| Arc::ptr_eq(held, self.flight))
        {
            under_way.remove(self.url);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Flights;
    use crate::verify::VerifyError;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_finished_flight_is_forgotten() {
        let flights = Flights::default();
        let runs = AtomicUsize::new(0);
        let load = async {
            runs.fetch_add(1, Ordering::SeqCst);
            Err(VerifyError::CertificateNotFetched)
        };
        let result = futures_util::FutureExt::now_or_never(flights.run("u", load));
        assert_eq!(result, Some(Err(VerifyError::CertificateNotFetched)));
        assert_eq!(flights.len(), 0);
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }
}
