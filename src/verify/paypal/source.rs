//! Where PayPal's signing certificates come from: your HTTP client.

use async_trait::async_trait;

/// Fetches the certificate document at a `paypal-cert-url` (PEM: the signing
/// certificate, then any intermediates), with your HTTP client: hookgate
/// does no networking of its own.
///
/// Only URLs that pass the verifier's rule reach it (`https`, one of
/// [`PAYPAL_CERTIFICATE_HOSTS`](crate::verify::PAYPAL_CERTIFICATE_HOSTS),
/// PayPal's certificate path), and each is fetched once and cached until the
/// certificate expires. Give your client a timeout below the provider's
/// answer budget, verify TLS, and return an error for any non-2xx answer:
/// an error answers the delivery 503, so PayPal retries it.
///
/// ```
/// use hookgate::verify::CertificateSource;
///
/// /// A source backed by your HTTP client (here a stand-in).
/// #[derive(Debug)]
/// struct Http;
///
/// #[async_trait::async_trait]
/// impl CertificateSource for Http {
///     async fn fetch(&self, url: &str) -> Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>> {
///         // e.g. Ok(client.get(url).send().await?.error_for_status()?.bytes().await?.to_vec())
///         Err(format!("no network in this example: {url}").into())
///     }
/// }
/// ```
#[async_trait]
pub trait CertificateSource: Send + Sync + std::fmt::Debug {
    /// The body served at `url`.
    async fn fetch(&self, url: &str) -> Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>>;
}

#[async_trait]
impl<S: CertificateSource + ?Sized> CertificateSource for std::sync::Arc<S> {
    async fn fetch(&self, url: &str) -> Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>> {
        (**self).fetch(url).await
    }
}
