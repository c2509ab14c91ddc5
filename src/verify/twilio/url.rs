//! The URL Twilio signed: formed from the configured public base (or the `Host`
//! header and a scheme) and the request target, plus the port variants the
//! helper libraries try.

use std::fmt;

use crate::headers::Headers;

use super::super::{ConfigError, VerifyError};

/// The `Host` header, read when no public URL is configured.
const HOST: &str = "Host";

/// A scheme Twilio can call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scheme {
    Https,
    Http,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Scheme::Https => "https",
            Scheme::Http => "http",
        }
    }

    /// The port the helper libraries add when the URL names none.
    fn default_port(self) -> &'static str {
        match self {
            Scheme::Https => "443",
            Scheme::Http => "80",
        }
    }

    /// `https://` or `http://` at the start of `text` (any case), and the rest.
    fn strip(text: &str) -> Option<(Scheme, &str)> {
        for (scheme, prefix) in [(Scheme::Https, "https://"), (Scheme::Http, "http://")] {
            if let Some(head) = text.get(..prefix.len()) {
                if head.eq_ignore_ascii_case(prefix) {
                    return Some((scheme, &text[prefix.len()..]));
                }
            }
        }
        None
    }
}

/// Where the scheme and authority of the signed URL come from.
#[derive(Clone)]
pub(super) enum Base {
    /// A configured public URL: scheme, authority and an optional path prefix.
    Public {
        scheme: Scheme,
        /// `[userinfo@]host[:port]`, as configured.
        authority: Box<str>,
        /// A path put before the request's path (`/api`), or empty.
        prefix: Box<str>,
    },
    /// The request's own authority (`Host`, or an absolute-form target) with
    /// this scheme.
    Request { scheme: Scheme },
}

impl Base {
    /// The default: the request's authority, over https.
    pub(super) fn request(scheme: Scheme) -> Self {
        Base::Request { scheme }
    }

    /// Parses a configured public base URL.
    pub(super) fn public(url: &str) -> Result<Self, ConfigError> {
        let invalid = |reason| ConfigError::InvalidPublicUrl { reason };
        if !url.bytes().all(is_url_byte) {
            return Err(invalid(
                "it holds spaces, control or non-ASCII characters (write it percent-encoded, as Twilio calls it)",
            ));
        }
        let (scheme, rest) =
            Scheme::strip(url).ok_or(invalid("it must start with `https://` or `http://`"))?;
        if rest.contains(['?', '#']) {
            return Err(invalid(
                "it must not have a query or a fragment: the query is taken from each request",
            ));
        }
        let (authority, prefix) = match rest.find('/') {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        let host = Authority::split(authority);
        if host.host.is_empty() {
            return Err(invalid("it names no host"));
        }
        if !host
            .port
            .is_none_or(|port| port.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(invalid("its port is not a number"));
        }
        Ok(Base::Public {
            scheme,
            authority: authority.into(),
            prefix: prefix.trim_end_matches('/').into(),
        })
    }

    /// The scheme, for `Debug`.
    fn scheme(&self) -> Scheme {
        match self {
            Base::Public { scheme, .. } | Base::Request { scheme } => *scheme,
        }
    }

    /// Forms the URL of a delivery from its request target (and `Host`).
    pub(super) fn form<'a>(
        &'a self,
        target: &'a str,
        headers: &'a Headers,
    ) -> Result<SignedUrl<'a>, VerifyError> {
        let malformed = |reason| VerifyError::MalformedRequestTarget { reason };
        if target.is_empty() || !target.bytes().all(is_url_byte) {
            return Err(malformed(
                "it is empty or holds spaces, control or non-ASCII characters: hand it over exactly as received, without decoding",
            ));
        }
        // origin-form (`/path?query`) or absolute-form (`https://host/path?query`).
        let (target_authority, path_and_query) = if target.starts_with('/') {
            (None, target)
        } else if let Some((_, rest)) = Scheme::strip(target) {
            let end = rest.find(['/', '?']).unwrap_or(rest.len());
            let (authority, path) = rest.split_at(end);
            if authority.is_empty() || path.starts_with('?') || path.is_empty() {
                return Err(malformed(
                    "an absolute-form target must name a host and a path",
                ));
            }
            (Some(authority), path)
        } else {
            return Err(malformed(
                "expected a path starting with `/` or an absolute `http(s)://` URL",
            ));
        };
        let (scheme, authority, prefix) = match self {
            Base::Public {
                scheme,
                authority,
                prefix,
            } => (*scheme, &**authority, &**prefix),
            Base::Request { scheme } => {
                let authority = match target_authority {
                    // RFC 9112 §3.2.2: with an absolute-form target, its
                    // authority wins over `Host`.
                    Some(authority) => authority,
                    None => host(headers)?,
                };
                (*scheme, authority, "")
            }
        };
        Ok(SignedUrl {
            scheme,
            authority: Authority::split(authority),
            prefix,
            path_and_query,
        })
    }
}

impl fmt::Debug for Base {
    /// The public URL without any credentials it carries.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Base::Public {
                authority, prefix, ..
            } => {
                let host = Authority::split(authority);
                let user = if host.userinfo.is_some() {
                    "<redacted>@"
                } else {
                    ""
                };
                let port = host.port.map(|p| format!(":{p}")).unwrap_or_default();
                write!(
                    f,
                    "Public(\"{}://{user}{}{port}{prefix}\")",
                    self.scheme().as_str(),
                    host.host
                )
            }
            Base::Request { scheme } => write!(f, "Request({}, Host)", scheme.as_str()),
        }
    }
}

/// The single `Host` value, checked to be `host[:port]`.
fn host(headers: &Headers) -> Result<&str, VerifyError> {
    let host = headers.get(HOST)?.ok_or(VerifyError::MissingHeader(HOST))?;
    let parts = Authority::split(host);
    let valid = !host.is_empty()
        && parts.userinfo.is_none()
        && !parts.host.is_empty()
        && host.bytes().all(is_url_byte)
        && !host.contains(['/', '?', '#'])
        && parts
            .port
            .is_none_or(|port| port.bytes().all(|b| b.is_ascii_digit()));
    if valid {
        Ok(host)
    } else {
        Err(VerifyError::MalformedHeader {
            header: HOST,
            reason: "expected `host` or `host:port`",
        })
    }
}

/// A byte that may appear in a URL as sent on the wire: visible ASCII.
fn is_url_byte(byte: u8) -> bool {
    (0x21..=0x7e).contains(&byte)
}

/// `[userinfo@]host[:port]`, split.
#[derive(Debug, Clone, Copy)]
pub(super) struct Authority<'a> {
    userinfo: Option<&'a str>,
    host: &'a str,
    /// What follows the `:` after the host, when not empty.
    port: Option<&'a str>,
}

impl<'a> Authority<'a> {
    fn split(authority: &'a str) -> Self {
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
            None => (None, authority),
        };
        // The port follows the last `:` outside an IPv6 literal's brackets.
        let host_end = hostport.rfind(']').map_or(0, |i| i + 1);
        match hostport[host_end..].rfind(':') {
            Some(colon) => {
                let colon = host_end + colon;
                let port = &hostport[colon + 1..];
                Authority {
                    userinfo,
                    host: &hostport[..colon],
                    // `host:` names no port (RFC 3986 §3.2.3).
                    port: (!port.is_empty()).then_some(port),
                }
            }
            None => Authority {
                userinfo,
                host: hostport,
                port: None,
            },
        }
    }
}

/// The URL a delivery was sent to, in pieces, so its variants can be fed to
/// the MAC without building strings.
#[derive(Debug, Clone, Copy)]
pub(super) struct SignedUrl<'a> {
    scheme: Scheme,
    authority: Authority<'a>,
    prefix: &'a str,
    path_and_query: &'a str,
}

/// Which port a variant of the URL carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PortVariant {
    /// No port at all (`https://host/…`).
    Without,
    /// The URL's own port, or the scheme's standard one when it names none.
    With,
}

impl<'a> SignedUrl<'a> {
    /// The variants the helper libraries accept, the one as formed first:
    /// without the port and with the port (the standard one added when
    /// absent).
    pub(super) fn variants(&self) -> [PortVariant; 2] {
        if self.authority.port.is_some() {
            [PortVariant::With, PortVariant::Without]
        } else {
            [PortVariant::Without, PortVariant::With]
        }
    }

    /// The pieces of one variant, in order; concatenated they are the URL.
    pub(super) fn pieces(&self, variant: PortVariant) -> [&'a str; 8] {
        let (userinfo, at) = match self.authority.userinfo {
            Some(userinfo) => (userinfo, "@"),
            None => ("", ""),
        };
        let (colon, port) = match variant {
            PortVariant::Without => ("", ""),
            PortVariant::With => (
                ":",
                self.authority
                    .port
                    .unwrap_or_else(|| self.scheme.default_port()),
            ),
        };
        [
            self.scheme.as_str(),
            "://",
            userinfo,
            at,
            self.authority.host,
            colon,
            port,
            // The prefix and the target are adjacent; `path_and_query` follows.
            self.prefix,
        ]
    }

    /// The request's path and query, which end every variant.
    pub(super) fn path_and_query(&self) -> &'a str {
        self.path_and_query
    }

    /// The query of the request target, without `?` (empty when none).
    pub(super) fn query(&self) -> &'a str {
        self.path_and_query
            .split_once('?')
            .map_or("", |(_, query)| query)
    }

    /// One variant as a string (tests and messages).
    #[cfg(test)]
    pub(super) fn text(self, variant: PortVariant) -> String {
        let mut url: String = self.pieces(variant).concat();
        url.push_str(self.path_and_query);
        url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(base: &Base, target: &str, host: Option<&str>) -> Result<[String; 2], VerifyError> {
        let mut headers = Headers::new();
        if let Some(host) = host {
            headers.append("Host", host);
        }
        let url = base.form(target, &headers)?;
        Ok(url.variants().map(|v| url.text(v)))
    }

    #[test]
    fn host_header_and_scheme_form_the_url() {
        let base = Base::request(Scheme::Https);
        assert_eq!(
            form(&base, "/hooks?a=1", Some("example.com")).unwrap(),
            [
                "https://example.com/hooks?a=1",
                "https://example.com:443/hooks?a=1"
            ]
        );
        assert_eq!(
            form(&Base::request(Scheme::Http), "/h", Some("example.com:8080")).unwrap(),
            ["http://example.com:8080/h", "http://example.com/h"]
        );
        assert_eq!(
            form(&base, "/h", Some("[::1]:8443")).unwrap(),
            ["https://[::1]:8443/h", "https://[::1]/h"]
        );
        assert_eq!(
            form(&base, "/h", Some("[::1]")).unwrap(),
            ["https://[::1]/h", "https://[::1]:443/h"]
        );
        assert_eq!(
            form(&base, "/h", Some("example.com:")).unwrap(),
            ["https://example.com/h", "https://example.com:443/h"]
        );
    }

    #[test]
    fn absolute_form_targets_keep_their_authority_but_not_their_scheme() {
        let base = Base::request(Scheme::Https);
        assert_eq!(
            form(&base, "http://internal:9000/h?x", Some("ignored.example")).unwrap(),
            ["https://internal:9000/h?x", "https://internal/h?x"]
        );
        let public = Base::public("https://example.com").unwrap();
        assert_eq!(
            form(&public, "http://internal:9000/h?x", None).unwrap()[0],
            "https://example.com/h?x"
        );
    }

    #[test]
    fn public_url_replaces_scheme_and_authority_and_prefixes_the_path() {
        let public = Base::public("HTTPS://user:pw@example.com:8443/api/").unwrap();
        assert_eq!(
            form(&public, "/twilio?a=%20", Some("10.0.0.1:3000")).unwrap(),
            [
                "https://user:pw@example.com:8443/api/twilio?a=%20",
                "https://user:pw@example.com/api/twilio?a=%20"
            ]
        );
        assert_eq!(
            format!("{public:?}"),
            "Public(\"https://<redacted>@example.com:8443/api\")"
        );
    }

    #[test]
    fn bad_public_urls_are_refused() {
        for url in [
            "example.com",
            "ftp://example.com",
            "https://",
            "https://:443",
            "https://example.com:x",
            "https://example.com/?a=1",
            "https://example.com/#rc=3",
            "https://exa mple.com",
            "https://exämple.com",
        ] {
            assert!(
                matches!(Base::public(url), Err(ConfigError::InvalidPublicUrl { .. })),
                "{url}"
            );
        }
    }

    #[test]
    fn bad_targets_and_hosts_are_refused() {
        let base = Base::request(Scheme::Https);
        for target in [
            "",
            "*",
            "hooks",
            "/a b",
            "/é",
            "https://",
            "https://h?x",
            "https://h",
        ] {
            assert!(
                matches!(
                    form(&base, target, Some("h")),
                    Err(VerifyError::MalformedRequestTarget { .. })
                ),
                "{target:?}"
            );
        }
        assert_eq!(
            form(&base, "/", None),
            Err(VerifyError::MissingHeader("Host"))
        );
        for host in ["", "a/b", "u@h", "h:x", ":80", "h?"] {
            assert!(
                matches!(
                    form(&base, "/", Some(host)),
                    Err(VerifyError::MalformedHeader { header: "Host", .. })
                ),
                "{host:?}"
            );
        }
    }

    #[test]
    fn query_is_the_targets() {
        let base = Base::request(Scheme::Https);
        let headers = Headers::from_pairs([("Host", "h")]);
        assert_eq!(base.form("/p?a=1&b", &headers).unwrap().query(), "a=1&b");
        assert_eq!(base.form("/p", &headers).unwrap().query(), "");
    }
}
