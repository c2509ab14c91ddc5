//! [`IpAllowlist`]: admits a request only when its client's address is in a
//! list of CIDRs, as a tower [`Layer`] on any route.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::ConnectInfo;
use axum::response::{IntoResponse, Response};
use futures_util::future::{ready, Either, Ready};
use http::{HeaderMap, Request, StatusCode};
use ipnet::{IpNet, Ipv4Net};
use tower_layer::Layer;
use tower_service::Service;

/// The longest piece of a refused entry an error repeats.
const ECHO_LIMIT: usize = 64;

/// A list of networks whose clients are admitted, as a tower [`Layer`] for
/// any route: the admin routes ([`AdminRoutes::allow_ips`](crate::axum::admin::AdminRoutes::allow_ips)),
/// or the webhook routes with the ranges a provider publishes (GitHub's
/// `hooks` list from `https://api.github.com/meta`, for example: fetching and
/// refreshing them is up to you).
///
/// The client is the peer address of the connection, from axum's
/// [`ConnectInfo<SocketAddr>`]: serve the app with
/// [`into_make_service_with_connect_info::<SocketAddr>()`](axum::Router::into_make_service_with_connect_info).
/// A request without it is refused (403 `no_client_address`) rather than
/// admitted on a guess. Behind a reverse proxy, opt in to
/// [`trust_forwarded_for`](IpAllowlist::trust_forwarded_for): only when the
/// peer is one of those proxies is `X-Forwarded-For` read, and the client is
/// its rightmost address that is not a trusted proxy (the left part of the
/// header is whatever the client sent, so it is never believed).
///
/// Refusals are 403 with a JSON body `{"error": code, "message": …}`; see
/// [`IpRefusal`]. Addresses compare in their canonical form: an IPv4 client
/// seen through an IPv6 socket (`::ffff:192.0.2.1`) matches `192.0.2.0/24`,
/// and an IPv4-mapped entry (`::ffff:192.0.2.0/120`) is kept as the IPv4
/// network it maps.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use axum::extract::ConnectInfo;
/// use axum::routing::get;
/// use hookgate::axum::IpAllowlist;
/// use std::net::SocketAddr;
/// use tower::ServiceExt;
///
/// let allowlist: IpAllowlist = "192.0.2.0/24, 2001:db8::/32".parse()?;
/// let app = axum::Router::new()
///     .route("/", get(|| async { "hello" }))
///     .layer(allowlist);
///
/// let from = |peer: &str| -> Result<http::Request<axum::body::Body>, Box<dyn std::error::Error>> {
///     let mut request = http::Request::new(axum::body::Body::empty());
///     request.extensions_mut().insert(ConnectInfo(peer.parse::<SocketAddr>()?));
///     Ok(request)
/// };
/// assert_eq!(app.clone().oneshot(from("192.0.2.7:5000")?).await?.status(), 200);
/// assert_eq!(app.clone().oneshot(from("198.51.100.1:5000")?).await?.status(), 403);
/// // Without ConnectInfo (served without `into_make_service_with_connect_info`):
/// let bare = http::Request::new(axum::body::Body::empty());
/// assert_eq!(app.oneshot(bare).await?.status(), 403);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct IpAllowlist {
    lists: Arc<Lists>,
}

#[derive(Debug, PartialEq, Eq)]
struct Lists {
    allowed: Vec<IpNet>,
    proxies: Vec<IpNet>,
}

/// Why a list of networks was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AllowlistError {
    /// The list has no entry: it would refuse every request.
    #[error(
        "the list has no network: it would refuse every request \
         (is the variable or file it is read from set and non-empty?)"
    )]
    Empty,
    /// An entry is neither an IP address nor a CIDR.
    #[error("`{entry}` is not an IP address or a CIDR such as `192.0.2.0/24` or `2001:db8::/32`")]
    Invalid {
        /// The entry (its first 64 characters).
        entry: String,
    },
    /// A CIDR has address bits set past its prefix length, so it is unclear
    /// whether the host or the network was meant.
    #[error(
        "`{entry}` has address bits set past its prefix length: write the network \
         `{network}`, or the single address without a prefix"
    )]
    HostBitsSet {
        /// The entry (its first 64 characters).
        entry: String,
        /// The network it lies in.
        network: IpNet,
    },
}

/// Why [`IpAllowlist`] refused a request; each answers 403 with a JSON body
/// `{"error": code, "message": …}` that never names the address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IpRefusal {
    /// The request carries no `ConnectInfo<SocketAddr>`: the server was not
    /// started with `into_make_service_with_connect_info::<SocketAddr>()`.
    /// Code `no_client_address`.
    #[error(
        "the client address is unknown (serve the app with \
         into_make_service_with_connect_info::<SocketAddr>())"
    )]
    NoClientAddress,
    /// A trusted proxy forwarded an `X-Forwarded-For` that is not a list of
    /// addresses. Code `bad_forwarded_for`.
    #[error("the X-Forwarded-For header from the proxy is not a list of IP addresses")]
    BadForwardedFor,
    /// The client's address is not in the list. Code `ip_not_allowed`.
    #[error("requests from this address are not allowed")]
    NotAllowed,
}

impl IpRefusal {
    /// The stable code in the JSON body: `no_client_address`,
    /// `bad_forwarded_for` or `ip_not_allowed`.
    pub fn code(&self) -> &'static str {
        match self {
            IpRefusal::NoClientAddress => "no_client_address",
            IpRefusal::BadForwardedFor => "bad_forwarded_for",
            IpRefusal::NotAllowed => "ip_not_allowed",
        }
    }
}

impl IntoResponse for IpRefusal {
    /// 403 with the JSON error body.
    fn into_response(self) -> Response {
        super::admin::error::json_error(StatusCode::FORBIDDEN, self.code(), self.to_string())
    }
}

impl IpAllowlist {
    /// A list admitting the clients in these networks. Each entry is a CIDR
    /// (`192.0.2.0/24`, `2001:db8::/32`) or a single address (`192.0.2.7`,
    /// `::1`); surrounding whitespace is ignored.
    ///
    /// # Errors
    /// [`AllowlistError`]: no entry, an entry that is not an address or a
    /// CIDR, or a CIDR with bits set past its prefix (`192.0.2.7/24`).
    pub fn new<I>(networks: I) -> Result<Self, AllowlistError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        Ok(Self {
            lists: Arc::new(Lists {
                allowed: parse_networks(networks)?,
                proxies: Vec::new(),
            }),
        })
    }

    /// Trusts `X-Forwarded-For` from peers in these networks (your reverse
    /// proxies or load balancers), in the same syntax as
    /// [`IpAllowlist::new`]. When the peer is one of them, the client is the
    /// rightmost address of the header (all its lines, in order) that is not
    /// in these networks; when every address is, the leftmost; when the
    /// header is missing, the peer itself. An entry that is not an address
    /// (with or without a port) met on the way is refused
    /// ([`IpRefusal::BadForwardedFor`]). From any other peer the header is
    /// ignored. Defaults to trusting no proxy.
    ///
    /// # Errors
    /// As [`IpAllowlist::new`].
    pub fn trust_forwarded_for<I>(self, proxies: I) -> Result<Self, AllowlistError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let proxies = parse_networks(proxies)?;
        Ok(Self {
            lists: Arc::new(Lists {
                allowed: self.lists.allowed.clone(),
                proxies,
            }),
        })
    }

    /// The networks admitted.
    pub fn networks(&self) -> &[IpNet] {
        &self.lists.allowed
    }

    /// The proxies whose `X-Forwarded-For` is trusted.
    pub fn trusted_proxies(&self) -> &[IpNet] {
        &self.lists.proxies
    }

    /// Whether `ip` is in one of the admitted networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        in_any(&self.lists.allowed, ip.to_canonical())
    }

    /// The decision the layer makes for a request from `peer` (its
    /// `ConnectInfo`, `None` without it) with these headers: the client's
    /// address when it is admitted.
    ///
    /// # Errors
    /// [`IpRefusal`]: no peer address, a bad `X-Forwarded-For` from a trusted
    /// proxy, or a client outside the list.
    pub fn check(
        &self,
        peer: Option<SocketAddr>,
        headers: &HeaderMap,
    ) -> Result<IpAddr, IpRefusal> {
        let peer = peer.ok_or(IpRefusal::NoClientAddress)?.ip().to_canonical();
        let client = self.client(peer, headers)?;
        if in_any(&self.lists.allowed, client) {
            Ok(client)
        } else {
            Err(IpRefusal::NotAllowed)
        }
    }

    /// The client's address: the peer, or what a trusted proxy says.
    fn client(&self, peer: IpAddr, headers: &HeaderMap) -> Result<IpAddr, IpRefusal> {
        let proxies = &self.lists.proxies;
        if !in_any(proxies, peer) {
            return Ok(peer);
        }
        let mut client = peer;
        let lines: Vec<_> = headers.get_all("x-forwarded-for").iter().collect();
        for line in lines.into_iter().rev() {
            let text = line.to_str().map_err(|_| IpRefusal::BadForwardedFor)?;
            for entry in text.rsplit(',') {
                client = forwarded_address(entry.trim()).ok_or(IpRefusal::BadForwardedFor)?;
                if !in_any(proxies, client) {
                    return Ok(client);
                }
            }
        }
        Ok(client)
    }
}

impl FromStr for IpAllowlist {
    type Err = AllowlistError;

    /// Entries separated by commas and/or whitespace, as
    /// [`IpAllowlist::new`] takes them (e.g. from an environment variable).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(
            s.split(|c: char| c == ',' || c.is_whitespace())
                .filter(|e| !e.is_empty()),
        )
    }
}

impl fmt::Debug for IpAllowlist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IpAllowlist")
            .field("networks", &self.lists.allowed)
            .field("trusted_proxies", &self.lists.proxies)
            .finish()
    }
}

impl<S> Layer<S> for IpAllowlist {
    type Service = IpAllowlistService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        IpAllowlistService {
            allowlist: self.clone(),
            inner,
        }
    }
}

/// The service [`IpAllowlist`] wraps around a route: it answers 403 to the
/// requests the list refuses and passes the rest on.
#[derive(Debug, Clone)]
pub struct IpAllowlistService<S> {
    allowlist: IpAllowlist,
    inner: S,
}

impl<S, B> Service<Request<B>> for IpAllowlistService<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Either<Ready<Result<Response, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0);
        match self.allowlist.check(peer, request.headers()) {
            Ok(_) => Either::Right(self.inner.call(request)),
            Err(refusal) => Either::Left(ready(Ok(refusal.into_response()))),
        }
    }
}

fn in_any(networks: &[IpNet], ip: IpAddr) -> bool {
    networks.iter().any(|net| net.contains(&ip))
}

fn parse_networks<I>(entries: I) -> Result<Vec<IpNet>, AllowlistError>
where
    I: IntoIterator,
    I::Item: AsRef<str>,
{
    let networks = entries
        .into_iter()
        .map(|entry| parse_network(entry.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    if networks.is_empty() {
        return Err(AllowlistError::Empty);
    }
    Ok(networks)
}

fn parse_network(entry: &str) -> Result<IpNet, AllowlistError> {
    let trimmed = entry.trim();
    let invalid = || AllowlistError::Invalid {
        entry: echo(trimmed),
    };
    if trimmed.contains('/') {
        let net: IpNet = trimmed.parse().map_err(|_| invalid())?;
        let network = net.trunc();
        if network != net {
            return Err(AllowlistError::HostBitsSet {
                entry: echo(trimmed),
                network,
            });
        }
        Ok(canonical(net))
    } else {
        let ip: IpAddr = trimmed.parse().map_err(|_| invalid())?;
        Ok(IpNet::from(ip.to_canonical()))
    }
}

/// An IPv4-mapped IPv6 network (`::ffff:192.0.2.0/120`) as the IPv4 network
/// it maps (`192.0.2.0/24`): clients are compared in canonical form.
fn canonical(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.network().to_ipv4_mapped() {
            Some(v4) => Ipv4Net::new(v4, v6.prefix_len() - 96).map_or(net, IpNet::V4),
            None => net,
        },
        _ => net,
    }
}

/// One `X-Forwarded-For` entry: an address, with or without a port
/// (`192.0.2.1:4711`, `[2001:db8::1]:4711`) or brackets.
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    let ip = entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| {
            entry
                .strip_prefix('[')
                .and_then(|e| e.strip_suffix(']'))
                .and_then(|e| e.parse::<IpAddr>().ok())
        })?;
    Some(ip.to_canonical())
}

/// The first [`ECHO_LIMIT`] characters of an entry, for an error message.
pub(crate) fn echo(s: &str) -> String {
    s.chars().take(ECHO_LIMIT).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(lines: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for line in lines {
            map.append("x-forwarded-for", line.parse().unwrap());
        }
        map
    }

    #[test]
    fn entries_parse_strictly() {
        let list: IpAllowlist = " 10.0.0.0/8,192.0.2.7 ::1\n2001:db8::/32 ".parse().unwrap();
        assert_eq!(list.networks().len(), 4);
        assert!(list.contains("10.1.2.3".parse().unwrap()));
        assert!(list.contains("192.0.2.7".parse().unwrap()));
        assert!(!list.contains("192.0.2.8".parse().unwrap()));
        assert!(
            list.contains("::ffff:10.9.9.9".parse().unwrap()),
            "mapped v4"
        );
        assert_eq!(
            "".parse::<IpAllowlist>().unwrap_err(),
            AllowlistError::Empty
        );
        assert_eq!(
            IpAllowlist::new(["10.0.0.1/8"]).unwrap_err(),
            AllowlistError::HostBitsSet {
                entry: "10.0.0.1/8".into(),
                network: "10.0.0.0/8".parse().unwrap()
            }
        );
        for bad in [
            "10.0.0.0/33",
            "example.com",
            "10.0.0.0/",
            "/8",
            "1.2.3.4:80",
        ] {
            assert!(
                matches!(IpAllowlist::new([bad]), Err(AllowlistError::Invalid { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn forwarded_for_is_read_only_from_trusted_proxies_rightmost_first() {
        let list = IpAllowlist::new(["192.0.2.0/24"])
            .unwrap()
            .trust_forwarded_for(["10.0.0.0/8"])
            .unwrap();
        let proxy: SocketAddr = "10.0.0.5:443".parse().unwrap();
        let stranger: SocketAddr = "198.51.100.9:443".parse().unwrap();
        let client = |peer, lines: &[&str]| list.check(Some(peer), &headers(lines));
        // The left part is whatever the client wrote: only the rightmost
        // untrusted entry counts.
        assert_eq!(
            client(proxy, &["192.0.2.1, 198.51.100.1"]),
            Err(IpRefusal::NotAllowed)
        );
        assert_eq!(
            client(proxy, &["198.51.100.1, 192.0.2.1, 10.0.0.7"]),
            Ok("192.0.2.1".parse().unwrap())
        );
        assert_eq!(
            client(proxy, &["198.51.100.1", "192.0.2.1:5555", "10.1.1.1"]),
            Ok("192.0.2.1".parse().unwrap())
        );
        assert_eq!(
            client(proxy, &["junk, 192.0.2.1"]),
            Ok("192.0.2.1".parse().unwrap())
        );
        assert_eq!(
            client(proxy, &["192.0.2.1, junk"]),
            Err(IpRefusal::BadForwardedFor)
        );
        assert_eq!(
            client(proxy, &[]),
            Err(IpRefusal::NotAllowed),
            "the proxy itself"
        );
        assert_eq!(client(proxy, &["10.0.0.9"]), Err(IpRefusal::NotAllowed));
        assert_eq!(
            client(stranger, &["192.0.2.1"]),
            Err(IpRefusal::NotAllowed),
            "an untrusted peer's header is ignored"
        );
        assert_eq!(
            list.check(None, &HeaderMap::new()),
            Err(IpRefusal::NoClientAddress)
        );
    }
}
