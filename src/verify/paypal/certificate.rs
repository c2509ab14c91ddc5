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
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage};
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
/// The critical extensions accepted: keyUsage and basicConstraints (both
/// checked), subjectAltName and extKeyUsage (whose values restrict nothing
/// this verifier does: the CN is what names PayPal, as in PayPal's SDKs).
const UNDERSTOOD: [ObjectIdentifier; 4] = [
    ObjectIdentifier::new_unwrap("2.5.29.15"),
    ObjectIdentifier::new_unwrap("2.5.29.17"),
    ObjectIdentifier::new_unwrap("2.5.29.19"),
    ObjectIdentifier::new_unwrap("2.5.29.37"),
];

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
    check_extensions(leaf)?;
    if key_usage(leaf)?.is_some_and(|usage| !usage.digital_signature()) {
        return Err(CertificateProblem::WrongKeyUsage);
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
    for below in 0..MAX_CERTIFICATES {
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
            if let Err(p) = may_issue(candidate, below) {
                problem = p;
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

/// Whether `cert` may issue the certificate above which `below`
/// intermediates already stand: a CA (`basicConstraints` with `cA`) whose
/// `pathLenConstraint` allows them, whose `keyUsage` (if any) has
/// `keyCertSign`, with no critical extension left unprocessed.
fn may_issue(cert: &Certificate, below: usize) -> Result<(), CertificateProblem> {
    check_extensions(cert)?;
    match cert.tbs_certificate().get_extension::<BasicConstraints>() {
        Ok(Some((
            _,
            BasicConstraints {
                ca: true,
                path_len_constraint,
            },
        ))) => {
            if path_len_constraint.is_some_and(|most| usize::from(most) < below) {
                return Err(CertificateProblem::PathTooLong);
            }
        }
        Ok(_) => return Err(CertificateProblem::NotCertificateAuthority),
        Err(_) => return Err(CertificateProblem::Unreadable),
    }
    if key_usage(cert)?.is_some_and(|usage| !usage.key_cert_sign()) {
        return Err(CertificateProblem::WrongKeyUsage);
    }
    Ok(())
}

/// Refuses a critical extension that is not [`UNDERSTOOD`].
fn check_extensions(cert: &Certificate) -> Result<(), CertificateProblem> {
    let extensions = cert.tbs_certificate().extensions().into_iter().flatten();
    for extension in extensions {
        if extension.critical && !UNDERSTOOD.contains(&extension.extn_id) {
            return Err(CertificateProblem::UnsupportedCriticalExtension);
        }
    }
    Ok(())
}

/// The certificate's `keyUsage`, if it has one.
fn key_usage(cert: &Certificate) -> Result<Option<KeyUsage>, CertificateProblem> {
    cert.tbs_certificate()
        .get_extension::<KeyUsage>()
        .map(|found| found.map(|(_, usage)| usage))
        .map_err(|_| CertificateProblem::Unreadable)
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
    use std::str::FromStr;
    use std::sync::OnceLock;
    use std::time::{Duration, SystemTime};

    use rsa::pkcs1v15::SigningKey;
    use rsa::sha2::Sha256;
    use rsa::PrivateKey;
    use time::OffsetDateTime;
    use x509_cert::builder::profile::BuilderProfile;
    use x509_cert::builder::{Builder, CertificateBuilder};
    use x509_cert::der::asn1::OctetString;
    use x509_cert::der::pem::LineEnding;
    use x509_cert::der::EncodePem;
    use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages};
    use x509_cert::ext::{Extension, ToExtension};
    use x509_cert::name::Name;
    use x509_cert::serial_number::SerialNumber;
    use x509_cert::spki::{ObjectIdentifier, SubjectPublicKeyInfoOwned, SubjectPublicKeyInfoRef};
    use x509_cert::time::{Time, Validity};
    use x509_cert::TbsCertificate;

    use super::{names_paypal, validate, TrustAnchors};
    use crate::verify::CertificateProblem;

    /// A profile with the given extensions.
    struct Profile {
        subject: Name,
        issuer: Name,
        extensions: Vec<Extension>,
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
            _tbs: &TbsCertificate,
        ) -> x509_cert::builder::Result<Vec<Extension>> {
            Ok(self.extensions.clone())
        }
    }

    fn keys() -> &'static [SigningKey<Sha256>; 4] {
        static KEYS: OnceLock<[SigningKey<Sha256>; 4]> = OnceLock::new();
        KEYS.get_or_init(|| {
            std::array::from_fn(|_| {
                SigningKey::new(PrivateKey::new(&mut getrandom::SysRng, 2048).unwrap())
            })
        })
    }

    fn name(cn: &str) -> Name {
        Name::from_str(&format!("CN={cn}")).unwrap()
    }

    fn ca(path_len: Option<u8>) -> Extension {
        let constraints = BasicConstraints {
            ca: true,
            path_len_constraint: path_len,
        };
        constraints.to_extension(&name("x"), &[]).unwrap()
    }

    fn usage(flags: KeyUsages) -> Extension {
        KeyUsage(flags.into())
            .to_extension(&name("x"), &[])
            .unwrap()
    }

    fn unknown_critical() -> Extension {
        Extension {
            extn_id: ObjectIdentifier::new_unwrap("1.3.6.1.4.1.55555.1"),
            critical: true,
            extn_value: OctetString::new(vec![5, 0]).unwrap(),
        }
    }

    /// The certificate of key `subject` named `cn`, issued by key `issuer`
    /// named `issuer_cn`.
    fn cert(
        cn: &str,
        subject: usize,
        issuer_cn: &str,
        issuer: usize,
        ext: Vec<Extension>,
    ) -> String {
        let keys = keys();
        let now = SystemTime::now();
        let validity = Validity::new(
            Time::try_from(now - Duration::from_secs(3600)).unwrap(),
            Time::try_from(now + Duration::from_secs(3600)).unwrap(),
        );
        let spki =
            SubjectPublicKeyInfoOwned::from_key(keys[subject].as_ref().as_public_key()).unwrap();
        let profile = Profile {
            subject: name(cn),
            issuer: name(issuer_cn),
            extensions: ext,
        };
        let serial = SerialNumber::from((subject * 10 + issuer) as u64 + 1);
        CertificateBuilder::new(profile, serial, validity, spki)
            .unwrap()
            .build::<_, rsa::pkcs1v15::Signature>(&keys[issuer])
            .unwrap()
            .to_pem(LineEnding::LF)
            .unwrap()
    }

    const LEAF: &str = "messageverificationcerts.paypal.com";

    fn root() -> String {
        cert("root", 0, "root", 0, vec![ca(None)])
    }

    fn check(chain: &[String]) -> Result<(), CertificateProblem> {
        let anchors = TrustAnchors::from_pem(root()).unwrap();
        validate(
            chain.concat().as_bytes(),
            &anchors,
            OffsetDateTime::now_utc(),
        )
        .map(|_| ())
    }

    #[test]
    fn a_plain_chain_holds() {
        let inter = cert(
            "inter",
            1,
            "root",
            0,
            vec![ca(Some(0)), usage(KeyUsages::KeyCertSign)],
        );
        let leaf = cert(
            LEAF,
            2,
            "inter",
            1,
            vec![usage(KeyUsages::DigitalSignature)],
        );
        assert_eq!(check(&[leaf, inter]), Ok(()));
    }

    #[test]
    fn an_unknown_critical_extension_is_refused() {
        let inter = cert("inter", 1, "root", 0, vec![ca(None)]);
        let leaf = cert(LEAF, 2, "inter", 1, vec![unknown_critical()]);
        assert_eq!(
            check(&[leaf, inter.clone()]),
            Err(CertificateProblem::UnsupportedCriticalExtension)
        );
        let odd_inter = cert("inter", 1, "root", 0, vec![ca(None), unknown_critical()]);
        let leaf = cert(LEAF, 2, "inter", 1, vec![]);
        assert_eq!(
            check(&[leaf, odd_inter]),
            Err(CertificateProblem::UnsupportedCriticalExtension)
        );
    }

    #[test]
    fn key_usages_are_enforced() {
        let inter = cert("inter", 1, "root", 0, vec![ca(None)]);
        let leaf = cert(LEAF, 2, "inter", 1, vec![usage(KeyUsages::KeyEncipherment)]);
        assert_eq!(
            check(&[leaf, inter]),
            Err(CertificateProblem::WrongKeyUsage)
        );
        let inter = cert(
            "inter",
            1,
            "root",
            0,
            vec![ca(None), usage(KeyUsages::CRLSign)],
        );
        let leaf = cert(LEAF, 2, "inter", 1, vec![]);
        assert_eq!(
            check(&[leaf, inter]),
            Err(CertificateProblem::WrongKeyUsage)
        );
    }

    #[test]
    fn issuers_must_be_cas_within_their_path_length() {
        let not_ca = cert("inter", 1, "root", 0, vec![]);
        let leaf = cert(LEAF, 2, "inter", 1, vec![]);
        assert_eq!(
            check(&[leaf.clone(), not_ca]),
            Err(CertificateProblem::NotCertificateAuthority)
        );
        // root → upper (pathLen 0) → lower → leaf: one intermediate too many.
        let upper = cert("upper", 1, "root", 0, vec![ca(Some(0))]);
        let lower = cert("inter", 3, "upper", 1, vec![ca(None)]);
        let leaf = cert(LEAF, 2, "inter", 3, vec![]);
        assert_eq!(
            check(&[leaf.clone(), lower.clone(), upper]),
            Err(CertificateProblem::PathTooLong)
        );
        let upper = cert("upper", 1, "root", 0, vec![ca(Some(1))]);
        assert_eq!(check(&[leaf, upper, lower]), Ok(()), "any order");
    }

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
