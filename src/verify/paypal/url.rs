//! Which `paypal-cert-url` values are fetched at all.
//!
//! The header names the key the signature is checked against, so a URL
//! anywhere but PayPal's would let the sender sign with a key of its own (the
//! chain check stops that too; refusing the URL first means nothing is
//! fetched for it). The rule is exact on purpose: `https`, one of PayPal's
//! API hosts, no userinfo, no port, the path of PayPal's certificate
//! endpoint, no query, no fragment, no escapes.

/// The hosts a `paypal-cert-url` may name: PayPal's live and sandbox API
/// hosts, both the classic and the `api-m` names. Compared without regard to
/// ASCII case, as hosts are.
pub const PAYPAL_CERTIFICATE_HOSTS: [&str; 4] = [
    "api.paypal.com",
    "api-m.paypal.com",
    "api.sandbox.paypal.com",
    "api-m.sandbox.paypal.com",
];

/// The path every PayPal certificate URL starts with.
const PATH_PREFIX: &str = "/v1/notifications/certs/";

/// Longer than any certificate URL PayPal sends.
const MAX_LEN: usize = 512;

/// Checks `url` against the rule; the reason when it is refused.
pub(super) fn check(url: &str) -> Result<(), &'static str> {
    if url.len() > MAX_LEN {
        return Err("it is longer than any PayPal certificate URL");
    }
    let Some(rest) = url.strip_prefix("https://") else {
        return Err("it is not an https:// URL");
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if authority.contains('@') {
        return Err("it carries userinfo before the host");
    }
    if authority.contains(':') {
        return Err("it names a port");
    }
    if !PAYPAL_CERTIFICATE_HOSTS
        .iter()
        .any(|host| host.eq_ignore_ascii_case(authority))
    {
        return Err("its host is not one of PayPal's API hosts");
    }
    let Some(name) = path.strip_prefix(PATH_PREFIX) else {
        return Err("its path is not PayPal's certificate path /v1/notifications/certs/");
    };
    if name.is_empty() {
        return Err("it names no certificate");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err("the certificate name holds a character PayPal's names never do (a query, fragment, escape or path separator)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn paypal_urls_pass() {
        for url in [
            "https://api.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-df8cd2d5",
            "https://api-m.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-df8cd2d5",
            "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-7a4a8ca0",
            "https://api-m.sandbox.paypal.com/v1/notifications/certs/CERT-1",
            "https://API.PayPal.com/v1/notifications/certs/CERT-1",
        ] {
            assert_eq!(check(url), Ok(()), "{url}");
        }
    }

    #[test]
    fn everything_else_is_refused() {
        for url in [
            "http://api.paypal.com/v1/notifications/certs/CERT-1",
            "HTTPS://api.paypal.com/v1/notifications/certs/CERT-1",
            "https://evil.example/v1/notifications/certs/CERT-1",
            "https://api.paypal.com.evil.example/v1/notifications/certs/CERT-1",
            "https://api.paypal.com./v1/notifications/certs/CERT-1",
            "https://evilapi.paypal.com/v1/notifications/certs/CERT-1",
            "https://api.paypal.com@evil.example/v1/notifications/certs/CERT-1",
            "https://user:pw@api.paypal.com/v1/notifications/certs/CERT-1",
            "https://api.paypal.com:443/v1/notifications/certs/CERT-1",
            "https://api.paypal.com:8443/v1/notifications/certs/CERT-1",
            "https://api.paypal.com",
            "https://api.paypal.com/",
            "https://api.paypal.com/v1/notifications/certs/",
            "https://api.paypal.com/v1/notifications/webhooks/CERT-1",
            "https://api.paypal.com/v1/notifications/certs/../../evil",
            "https://api.paypal.com/v1/notifications/certs/CERT-1?x=1",
            "https://api.paypal.com/v1/notifications/certs/CERT-1#f",
            "https://api.paypal.com/v1/notifications/certs/CERT%2F1",
            "https://api.paypal.com/v1/notifications/certs/CERT-1/x",
            "https://api.paypal.com\\@evil.example/v1/notifications/certs/CERT-1",
            "https://api.paypal.com/v1/notifications/certs/CERT 1",
            "",
        ] {
            assert!(check(url).is_err(), "{url}");
        }
        let long = format!(
            "https://api.paypal.com/v1/notifications/certs/{}",
            "a".repeat(600)
        );
        assert!(check(&long).is_err());
    }
}
