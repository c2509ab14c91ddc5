//! A local PayPal: a CA, an intermediate and a signing certificate named like
//! PayPal's, generated on the spot, signing deliveries as PayPal does; and a
//! [`CertificateSource`] that serves fixed documents. Re-exported from
//! [`crate::testing`].

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rsa::pkcs1v15::SigningKey;
use rsa::sha2::Sha256;
use rsa::{Pkcs1v15Sign, PrivateKey};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder, CertificateBuilder};
use x509_cert::der::pem::LineEnding;
use x509_cert::der::EncodePem;
use x509_cert::ext::pkix::BasicConstraints;
use x509_cert::ext::{Extension, ToExtension};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{SubjectPublicKeyInfoOwned, SubjectPublicKeyInfoRef};
use x509_cert::time::{Time, Validity};
use x509_cert::TbsCertificate;

use super::signature::{message_digest, Crc32Text};
use super::CertificateSource;

/// The CN of PayPal's live signing certificate, which [`PayPalTestPki`]'s
/// signing certificate carries.
pub const PAYPAL_TEST_COMMON_NAME: &str = "messageverificationcerts.paypal.com";

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// A local PKI in PayPal's shape: a root CA (your trust anchor in tests), an
/// intermediate CA, and a signing certificate with PayPal's CN, all RSA
/// 2048. Key generation takes a moment: share one with
/// [`PayPalTestPki::shared`].
pub struct PayPalTestPki {
    root_pem: String,
    intermediate_pem: String,
    leaf_pem: String,
    intermediate_name: Name,
    intermediate_key: SigningKey<Sha256>,
    leaf_key: PrivateKey,
    serial: AtomicUsize,
}

/// The certificate builder profile of the test PKI: a subject, an issuer,
/// and whether it is a CA.
struct Profile {
    subject: Name,
    issuer: Name,
    ca: bool,
}

impl BuilderProfile for Profile {
    fn get_issuer(&self, _subject: &Name) -> Name {
        self.issuer.clone()
    }

    fn get_subject(&self) -> Name {
        self.subject.clone()
    }

    fn build_extensions(
        &self,
        _spk: SubjectPublicKeyInfoRef<'_>,
        _issuer_spk: SubjectPublicKeyInfoRef<'_>,
        tbs: &TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        let constraints = BasicConstraints {
            ca: self.ca,
            path_len_constraint: None,
        };
        Ok(vec![constraints.to_extension(tbs.subject(), &[])?])
    }
}

/// The name `CN={cn}, O=hookgate test`; `cn` must not hold `,`, `+` or `=`.
fn name(cn: &str) -> Name {
    // The names built here are fixed strings or checked by the caller.
    Name::from_str(&format!("CN={cn},O=hookgate test")).expect("a valid test name")
}

fn time_of(at: OffsetDateTime) -> Time {
    let secs = u64::try_from(at.unix_timestamp()).unwrap_or(0);
    Time::try_from(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
        .expect("a time within X.509's range")
}

fn new_key() -> PrivateKey {
    // The OS RNG failing is not a state a test can go on from.
    PrivateKey::new(&mut getrandom::SysRng, 2048).expect("RSA key generation")
}

/// Issues a certificate of `subject_key` for `profile`, signed by `issuer_key`.
fn issue(
    profile: Profile,
    serial: usize,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    subject_key: &PrivateKey,
    issuer_key: &SigningKey<Sha256>,
) -> String {
    let spki = SubjectPublicKeyInfoOwned::from_key(subject_key.as_public_key())
        .expect("an encodable RSA key");
    let builder = CertificateBuilder::new(
        profile,
        SerialNumber::from(serial as u64 + 1),
        Validity::new(time_of(not_before), time_of(not_after)),
        spki,
    )
    .expect("a valid test certificate");
    let cert = builder
        .build::<_, rsa::pkcs1v15::Signature>(issuer_key)
        .expect("signing a test certificate");
    cert.to_pem(LineEnding::LF)
        .expect("PEM of a test certificate")
}

impl PayPalTestPki {
    /// Generates a fresh PKI (three RSA keys); its certificates are valid
    /// from a day ago for a year.
    pub fn generate() -> Self {
        let now = OffsetDateTime::now_utc();
        let (from, until) = (now - DAY, now + 365 * DAY);
        let root_key = SigningKey::<Sha256>::new(new_key());
        let intermediate = new_key();
        let leaf_key = new_key();
        let root_name = name("hookgate test root CA");
        let intermediate_name = name("hookgate test intermediate CA");
        let root_pem = issue(
            Profile {
                subject: root_name.clone(),
                issuer: root_name.clone(),
                ca: true,
            },
            0,
            from,
            until,
            root_key.as_ref(),
            &root_key,
        );
        let intermediate_pem = issue(
            Profile {
                subject: intermediate_name.clone(),
                issuer: root_name,
                ca: true,
            },
            1,
            from,
            until,
            &intermediate,
            &root_key,
        );
        let intermediate_key = SigningKey::<Sha256>::new(intermediate);
        let leaf_pem = issue(
            Profile {
                subject: name(PAYPAL_TEST_COMMON_NAME),
                issuer: intermediate_name.clone(),
                ca: false,
            },
            2,
            from,
            until,
            &leaf_key,
            &intermediate_key,
        );
        Self {
            root_pem,
            intermediate_pem,
            leaf_pem,
            intermediate_name,
            intermediate_key,
            leaf_key,
            serial: AtomicUsize::new(3),
        }
    }

    /// One PKI per process, generated on first use.
    pub fn shared() -> &'static Self {
        static SHARED: OnceLock<PayPalTestPki> = OnceLock::new();
        SHARED.get_or_init(Self::generate)
    }

    /// PEM of the root CA: give it to
    /// [`TrustAnchors::from_pem`](crate::verify::TrustAnchors::from_pem).
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// PEM of the intermediate CA.
    pub fn intermediate_pem(&self) -> &str {
        &self.intermediate_pem
    }

    /// PEM of the signing certificate alone.
    pub fn leaf_pem(&self) -> &str {
        &self.leaf_pem
    }

    /// What PayPal's certificate URL serves: the signing certificate, then
    /// the intermediate.
    pub fn chain_pem(&self) -> String {
        format!("{}{}", self.leaf_pem, self.intermediate_pem)
    }

    /// A chain (signing certificate, then the intermediate) for another
    /// signing certificate of the same key, with subject CN `common_name`
    /// (no `,`, `+` or `=`) and these validity dates: for testing expired,
    /// not yet valid and misnamed certificates.
    pub fn issue_chain(
        &self,
        common_name: &str,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> String {
        let leaf = issue(
            Profile {
                subject: name(common_name),
                issuer: self.intermediate_name.clone(),
                ca: false,
            },
            self.serial.fetch_add(1, Ordering::Relaxed),
            not_before,
            not_after,
            &self.leaf_key,
            &self.intermediate_key,
        );
        format!("{leaf}{}", self.intermediate_pem)
    }

    /// The signing certificate's key, signing a copy of itself with PayPal's
    /// CN: what a forger serves, chained to nothing.
    pub fn self_signed_pem(&self) -> String {
        let now = OffsetDateTime::now_utc();
        let key = SigningKey::<Sha256>::new(self.leaf_key.clone());
        let own = name(PAYPAL_TEST_COMMON_NAME);
        issue(
            Profile {
                subject: own.clone(),
                issuer: own,
                ca: true,
            },
            self.serial.fetch_add(1, Ordering::Relaxed),
            now - DAY,
            now + 365 * DAY,
            &self.leaf_key,
            &key,
        )
    }

    /// The `paypal-transmission-sig` value of a delivery: base64 of the
    /// signing key's RSA-SHA256 (PKCS#1 v1.5) signature over
    /// `{transmission_id}|{transmission_time}|{webhook_id}|{crc32(body)}`.
    pub fn sign(
        &self,
        transmission_id: &str,
        transmission_time: &str,
        webhook_id: &str,
        body: &[u8],
    ) -> String {
        let digest = message_digest(
            transmission_id.as_bytes(),
            transmission_time.as_bytes(),
            webhook_id.as_bytes(),
            &Crc32Text::of(body),
        );
        let signature = self
            .leaf_key
            .sign(Pkcs1v15Sign::new::<Sha256>(), &digest)
            .expect("signing with a 2048-bit key");
        STANDARD.encode(signature)
    }

    /// Headers of a PayPal delivery of `body` for `webhook_id`, sent at `at`
    /// (whole seconds) and naming its certificate at `cert_url`:
    /// `paypal-transmission-id` (derived from the body and time),
    /// `paypal-transmission-time`, `paypal-transmission-sig`,
    /// `paypal-cert-url` and `paypal-auth-algo: SHA256withRSA`.
    pub fn headers(
        &self,
        cert_url: &str,
        webhook_id: &str,
        body: &[u8],
        at: OffsetDateTime,
    ) -> Vec<(String, String)> {
        let at = at.replace_nanosecond(0).unwrap_or(at);
        let time = at.format(&Rfc3339).unwrap_or_default();
        let id = format!(
            "{:08x}-0000-4000-8000-{:012x}",
            crc32fast::hash(body),
            at.unix_timestamp()
        );
        let signature = self.sign(&id, &time, webhook_id, body);
        vec![
            ("PAYPAL-TRANSMISSION-ID".to_owned(), id),
            ("PAYPAL-TRANSMISSION-TIME".to_owned(), time),
            ("PAYPAL-TRANSMISSION-SIG".to_owned(), signature),
            ("PAYPAL-CERT-URL".to_owned(), cert_url.to_owned()),
            ("PAYPAL-AUTH-ALGO".to_owned(), "SHA256withRSA".to_owned()),
        ]
    }
}

impl fmt::Debug for PayPalTestPki {
    /// No key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PayPalTestPki")
            .field("common_name", &PAYPAL_TEST_COMMON_NAME)
            .finish_non_exhaustive()
    }
}

/// A [`CertificateSource`] serving fixed documents by URL, counting the
/// fetches; any other URL fails (as a network error would).
#[derive(Debug, Default)]
pub struct StaticCertificates {
    documents: HashMap<String, Vec<u8>>,
    fetches: AtomicUsize,
}

impl StaticCertificates {
    /// Serves each `(url, document)`.
    pub fn new<U, D>(documents: impl IntoIterator<Item = (U, D)>) -> Self
    where
        U: Into<String>,
        D: Into<Vec<u8>>,
    {
        Self {
            documents: documents
                .into_iter()
                .map(|(url, doc)| (url.into(), doc.into()))
                .collect(),
            fetches: AtomicUsize::new(0),
        }
    }

    /// How many fetches were asked for so far.
    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl CertificateSource for StaticCertificates {
    async fn fetch(&self, url: &str) -> Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        self.documents
            .get(url)
            .cloned()
            .ok_or_else(|| format!("no certificate is served at {url}").into())
    }
}
