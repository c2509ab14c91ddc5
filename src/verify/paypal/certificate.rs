//! The signing certificate a delivery names: reading the PEM PayPal serves,
//! building the path to a trust anchor, and checking its subject and dates.
//!
//! Certificate signatures on the path are RSA PKCS#1 v1.5 with SHA-256,
//! SHA-384 or SHA-512 (every DigiCert RSA chain PayPal uses); the path is
//! built from the served certificates in any order, at most
//! [`MAX_CERTIFICATES`] deep. Revocation is not checked (PayPal's SDKs do not
//! either).

use std::fmt;

use rsa::sha2::{Digest, Sha256, Sha384, Sha512};
use rsa::traits::PublicKeyParts;
use rsa::{Pkcs1v15Sign, PublicKey};
use time::OffsetDateTime;
use x509_cert::der::referenced::OwnedToRef;
use x509_cert::der::Encode;
use x509_cert::ext::pkix::BasicConstraints;
use x509_cert::spki::ObjectIdentifier;
use x509_cert::Certificate;

use crate::verify::{CertificateProblem, ConfigError};

/// The largest certificate document read (a PEM chain is a few KiB).
pub(super) const MAX_DOCUMENT: usize = 64 * 1024;
/// The most certificates a document may hold.
pub(super) const MAX_CERTIFICATES: usize = 8;

const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const SHA384_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const SHA512_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");
const COMMON_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");

/// The certificates a signing certificate must chain to: PEM of the roots
/// (or of the intermediate CAs you pin) you trust to issue PayPal's
/// certificates. See the crate's README for the DigiCert roots PayPal uses.
///
/// ```
/// use hookgate::verify::TrustAnchors;
/// assert!(TrustAnchors::from_pem(b"not a certificate").is_err());
/// ```
#[derive(Clone)]
pub struct TrustAnchors {
    anchors: Vec<Anchor>,
}

/// One trust anchor: its subject (DER), its whole DER, and its key.
#[derive(Clone)]
struct Anchor {
    subject: Vec<u8>,
    der: Vec<u8>,
    key: PublicKey,
    common_name: Option<String>,
}

impl TrustAnchors {
    /// Reads every `CERTIFICATE` block of `pem` as a trust anchor.
    ///
    /// # Errors
    /// [`ConfigError::InvalidTrustAnchor`] when `pem` holds no certificate,
    /// one that cannot be read, or one whose key is not RSA.
    pub fn from_pem(pem: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        let refuse = |reason| ConfigError::InvalidTrustAnchor { reason };
        let certs = Certificate::load_pem_chain(pem.as_ref())
            .map_err(|_| refuse("the PEM holds a certificate that cannot be read"))?;
        if certs.is_empty() {
            return Err(refuse("the PEM holds no certificate"));
        }
        let anchors = certs
            .iter()
            .map(|cert| {
                let tbs = cert.tbs_certificate();
                Ok(Anchor {
                    subject: tbs
                        .subject()
                        .to_der()
                        .map_err(|_| refuse("a subject cannot be encoded"))?,
                    der: cert
                        .to_der()
                        .map_err(|_| refuse("a certificate cannot be encoded"))?,
                    key: rsa_key(cert).ok_or(refuse("only RSA trust anchors are supported"))?,
                    common_name: common_names(cert).next(),
                })
            })
            .collect::<Result<_, ConfigError>>()?;
        Ok(Self { anchors })
    }

    /// Adds the anchors of `other`.
    pub fn extend(&mut self, other: TrustAnchors) {
        self.anchors.extend(other.anchors);
    }

    /// How many anchors there are.
    pub fn len(&self) -> usize {
        self.anchors.len()
    }

    /// Whether there are none (never, for a set read by [`TrustAnchors::from_pem`]).
    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }
}

impl fmt::Debug for TrustAnchors {
    /// The anchors' common names.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.anchors.iter().map(|a| a.common_name.as_deref()))
            .finish()
    }
}

/// A signing certificate that chains to a trust anchor and names PayPal:
/// its key, and the validity window of its whole path.
#[derive(Clone)]
pub(super) struct SigningCertificate {
    pub(super) key: PublicKey,
    pub(super) not_before: OffsetDateTime,
    pub(super) not_after: OffsetDateTime,
}

impl SigningCertificate {
    /// Whether every certificate on the path is valid at `now`.
    pub(super) fn check_dates(&self, now: OffsetDateTime) -> Result<(), CertificateProblem> {
        if now < self.not_before {
            return Err(CertificateProblem::NotYetValid {
                not_before: self.not_before,
            });
        }
        if now > self.not_after {
            return Err(CertificateProblem::Expired {
                not_after: self.not_after,
            });
        }
        Ok(())
    }
}

impl fmt::Debug for SigningCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningCertificate")
            .field("key_bits", &(self.key.size() * 8))
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish()
    }
}

/// Reads the document a certificate URL served (the signing certificate
/// first, then any intermediates) and checks it: a path to one of
/// `anchors`, a subject naming PayPal, an RSA key, and dates valid at `now`.
pub(super) fn validate(
    document: &[u8],
    anchors: &TrustAnchors,
    now: OffsetDateTime,
) -> Result<SigningCertificate, CertificateProblem> {
    if document.len() > MAX_DOCUMENT {
        return Err(CertificateProblem::TooLarge {
            limit: MAX_DOCUMENT,
        });
    }
    let certs =
        Certificate::load_pem_chain(document).map_err(|_| CertificateProblem::Unreadable)?;
    if certs.len() > MAX_CERTIFICATES {
        return Err(CertificateProblem::TooManyCertificates {
            limit: MAX_CERTIFICATES,
        });
    }
    let Some(leaf) = certs.first() else {
        return Err(CertificateProblem::Unreadable);
    };
    if !common_names(leaf).any(|cn| names_paypal(&cn)) {
        return Err(CertificateProblem::WrongSubject);
    }
    let key = rsa_key(leaf).ok_or(CertificateProblem::UnsupportedKey)?;
    if !(2048..=4096).contains(&(key.size() * 8)) {
        return Err(CertificateProblem::UnsupportedKey);
    }
    let (mut not_before, mut not_after) = dates(leaf);
    let mut current = leaf;
    let mut used = [false; MAX_CERTIFICATES];
    used[0] = true;
    let mut problem = CertificateProblem::NoTrustedChain;
    for _ in 0..MAX_CERTIFICATES {
        let issuer = current
            .tbs_certificate()
            .issuer()
            .to_der()
            .map_err(|_| CertificateProblem::Unreadable)?;
        let der = current
            .to_der()
            .map_err(|_| CertificateProblem::Unreadable)?;
        for anchor in &anchors.anchors {
            if anchor.der == der {
                return window(key, not_before, not_after, now);
            }
            if anchor.subject == issuer {
                match signed_by(current, &anchor.key) {
                    Ok(()) => return window(key, not_before, not_after, now),
                    Err(p) => problem = p,
                }
            }
        }
        let mut next = None;
        for (index, candidate) in certs.iter().enumerate() {
            let subject = candidate.tbs_certificate().subject().to_der();
            if used[index] || subject.as_deref() != Ok(&issuer[..]) {
                continue;
            }
            let Some(candidate_key) = rsa_key(candidate) else {
                continue;
            };
            if let Err(p) = signed_by(current, &candidate_key) {
                problem = p;
                continue;
            }
            if !is_ca(candidate) {
                problem = CertificateProblem::NotCertificateAuthority;
                continue;
            }
            next = Some(index);
            break;
        }
        let Some(index) = next else {
            return Err(problem);
        };
        used[index] = true;
        current = &certs[index];
        let (from, until) = dates(current);
        not_before = not_before.max(from);
        not_after = not_after.min(until);
    }
    Err(problem)
}

/// The checked certificate, once its path's dates hold at `now`.
fn window(
    key: PublicKey,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    now: OffsetDateTime,
) -> Result<SigningCertificate, CertificateProblem> {
    let cert = SigningCertificate {
        key,
        not_before,
        not_after,
    };
    cert.check_dates(now)?;
    Ok(cert)
}

/// PayPal's SDK rule for the signing certificate's CN (Java's
/// `SSLUtil.validateCertificateChain`): `messageverificationcerts…` ending
/// in `.paypal.com` (live: `messageverificationcerts.paypal.com`, sandbox:
/// `messageverificationcerts.sandbox.paypal.com`).
fn names_paypal(common_name: &str) -> bool {
    common_name.starts_with("messageverificationcerts") && common_name.ends_with(".paypal.com")
}

/// Every CN value of the certificate's subject that reads as a string.
fn common_names(cert: &Certificate) -> impl Iterator<Item = String> + '_ {
    cert.tbs_certificate()
        .subject()
        .iter()
        .filter(|atv| atv.oid == COMMON_NAME)
        .filter_map(|atv| {
            x509_cert::ext::pkix::name::DirectoryString::try_from(&atv.value)
                .ok()
                .map(String::from)
        })
}

/// The certificate's RSA key, if it has one.
fn rsa_key(cert: &Certificate) -> Option<PublicKey> {
    let spki = cert.tbs_certificate().subject_public_key_info();
    if spki.algorithm.oid != RSA_ENCRYPTION {
        return None;
    }
    PublicKey::try_from(spki.owned_to_ref()).ok()
}

/// Whether `cert` says it is a CA (`basicConstraints` with `cA`).
fn is_ca(cert: &Certificate) -> bool {
    matches!(
        cert.tbs_certificate().get_extension::<BasicConstraints>(),
        Ok(Some((_, BasicConstraints { ca: true, .. })))
    )
}

/// Whether `cert`'s signature holds under `issuer_key`.
fn signed_by(cert: &Certificate, issuer_key: &PublicKey) -> Result<(), CertificateProblem> {
    let tbs = cert
        .tbs_certificate()
        .to_der()
        .map_err(|_| CertificateProblem::Unreadable)?;
    let signature = cert
        .signature()
        .as_bytes()
        .ok_or(CertificateProblem::Unreadable)?;
    let algorithm = cert.signature_algorithm().oid;
    let verified = if algorithm == SHA256_WITH_RSA {
        issuer_key.verify(
            Pkcs1v15Sign::new::<Sha256>(),
            &Sha256::digest(&tbs),
            signature,
        )
    } else if algorithm == SHA384_WITH_RSA {
        issuer_key.verify(
            Pkcs1v15Sign::new::<Sha384>(),
            &Sha384::digest(&tbs),
            signature,
        )
    } else if algorithm == SHA512_WITH_RSA {
        issuer_key.verify(
            Pkcs1v15Sign::new::<Sha512>(),
            &Sha512::digest(&tbs),
            signature,
        )
    } else {
        return Err(CertificateProblem::UnsupportedSignatureAlgorithm);
    };
    verified.map_err(|_| CertificateProblem::NoTrustedChain)
}

/// A certificate's validity dates.
fn dates(cert: &Certificate) -> (OffsetDateTime, OffsetDateTime) {
    let validity = cert.tbs_certificate().validity();
    let at = |time: x509_cert::time::Time| {
        let secs = i64::try_from(time.to_unix_duration().as_secs()).unwrap_or(i64::MAX);
        OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    };
    (at(validity.not_before), at(validity.not_after))
}

#[cfg(test)]
mod tests {
    use super::names_paypal;

    #[test]
    fn paypal_common_names() {
        assert!(names_paypal("messageverificationcerts.paypal.com"));
        assert!(names_paypal("messageverificationcerts.sandbox.paypal.com"));
        assert!(!names_paypal("evil.example.com"));
        assert!(!names_paypal("paypal.com"));
        assert!(!names_paypal(
            "messageverificationcerts.paypal.com.evil.example"
        ));
        assert!(!names_paypal("www.paypal.com"));
    }
}
