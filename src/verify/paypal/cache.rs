//! Checked signing certificates by URL: bounded, and each kept only until
//! its path's `notAfter`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use time::OffsetDateTime;

use super::certificate::SigningCertificate;

/// Checked signing certificates by the URL they were fetched from.
#[derive(Debug)]
pub(super) struct CertificateCache {
    capacity: usize,
    entries: RwLock<HashMap<Box<str>, Arc<SigningCertificate>>>,
}

impl CertificateCache {
    /// An empty cache holding at most `capacity` (at least 1) certificates.
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            entries: RwLock::new(HashMap::new()),
        }
    }

    /// The certificate fetched from `url`, if it is held.
    pub(super) fn get(&self, url: &str) -> Option<Arc<SigningCertificate>> {
        // A poisoned lock only means a panic elsewhere while holding it; the
        // map itself is always whole (each write is one insert or remove).
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        entries.get(url).cloned()
    }

    /// Whether a certificate from `url` is held and valid at `now`.
    pub(super) fn holds_valid(&self, url: &str, now: OffsetDateTime) -> bool {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        entries
            .get(url)
            .is_some_and(|cert| cert.check_dates(now).is_ok())
    }

    /// Keeps `cert` for `url`. Certificates expired at `now` go first; when
    /// the cache is still full, the one that expires soonest makes room.
    pub(super) fn insert(&self, url: &str, cert: SigningCertificate, now: OffsetDateTime) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        entries.retain(|_, held| held.not_after >= now);
        if entries.len() >= self.capacity && !entries.contains_key(url) {
            let soonest = entries
                .iter()
                .min_by_key(|(_, held)| held.not_after)
                .map(|(url, _)| url.clone());
            if let Some(soonest) = soonest {
                entries.remove(&soonest);
            }
        }
        entries.insert(url.into(), Arc::new(cert));
    }

    /// How many certificates are held.
    pub(super) fn len(&self) -> usize {
        self.entries.read().unwrap_or_else(|e| e.into_inner()).len()
    }
}
