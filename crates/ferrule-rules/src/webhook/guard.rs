//! Refusal of webhook URLs that reach into the server's own network
//! (server-side request forgery).
//!
//! Checked twice: when a call is submitted (the scheme, userinfo, literal
//! addresses and `localhost`, cheap), and when it connects, on the addresses
//! DNS gave ([`GuardedResolver`]), because a name may resolve to a public
//! address at submit time and to a private one a moment later (DNS
//! rebinding). The connection only ever uses addresses that passed.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::WebhookRefused;

/// Longest URL accepted, in bytes.
pub const MAX_URL_BYTES: usize = 8 * 1024;

/// Checks a URL: http or https, a host, no user or password, and unless
/// `allow_private`, neither a non-public literal address nor `localhost`.
/// Names are checked again on connection, once resolved.
pub fn check_url(url: &str, allow_private: bool) -> Result<Url, WebhookRefused> {
    let refuse = |why: &str| -> Result<Url, WebhookRefused> {
        Err(WebhookRefused::Url(format!("{}: {why}", shorten(url))))
    };
    if url.len() > MAX_URL_BYTES {
        return refuse(&format!("longer than {MAX_URL_BYTES} bytes"));
    }
    let parsed = match Url::parse(url) {
        Ok(u) => u,
        Err(e) => return refuse(&format!("not a URL ({e})")),
    };
    if !matches!(parsed.scheme(), "http" | "https") {
        return refuse("not an http or https URL");
    }
    // Credentials in a URL end up in logs and dead letters; headers are
    // the place for them.
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return refuse("a user or password in the URL is refused (use a header)");
    }
    let Some(host) = parsed.host() else {
        return refuse("no host");
    };
    if allow_private {
        return Ok(parsed);
    }
    let public = match host {
        url::Host::Ipv4(ip) => is_public(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => is_public(IpAddr::V6(ip)),
        url::Host::Domain(name) => !is_local_name(name),
    };
    if public {
        Ok(parsed)
    } else {
        refuse("a loopback, private or otherwise non-public address is refused")
    }
}

/// `localhost` and its subdomains always mean this machine (RFC 6761).
fn is_local_name(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// A URL for an error message: bounded, whatever its length.
fn shorten(url: &str) -> String {
    const SHOWN: usize = 200;
    if url.len() <= SHOWN {
        return url.to_owned();
    }
    let mut end = SHOWN;
    while !url.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &url[..end])
}

/// Whether an address is on the public internet: not loopback, private,
/// link-local (cloud metadata at 169.254.169.254 included), shared (CGNAT),
/// unspecified, multicast, broadcast, reserved or documentation, nor an
/// IPv6 form embedding such an IPv4 address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let private = a == 0 // "this network", 0.0.0.0 included
        || a == 10
        || a == 127
        || (a == 100 && (64..=127).contains(&b)) // shared address space (CGNAT)
        || (a == 169 && b == 254) // link-local, cloud metadata
        || (a == 172 && (16..=31).contains(&b))
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // documentation
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast
        || (a == 192 && b == 168)
        || (a == 198 && (18..=19).contains(&b)) // benchmarking
        || (a == 198 && b == 51 && c == 100) // documentation
        || (a == 203 && b == 0 && c == 113) // documentation
        || a >= 224; // multicast, reserved, broadcast
    !private
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = embedded_v4(ip) {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    let private = ip.is_unspecified()
        || ip.is_loopback()
        || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated) fec0::/10
        || (s[0] & 0xff00) == 0xff00 // multicast
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x2001 && s[1] == 0) // Teredo: tunnels to any IPv4
        || (s[0] == 0x0100 && s[1] == 0 && s[2] == 0 && s[3] == 0) // discard-only
        || s[..6] == [0; 6]; // IPv4-compatible (deprecated) and other ::/96
    !private
}

/// The IPv4 address an IPv6 one stands for, in the forms that reach it:
/// IPv4-mapped (`::ffff:a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`) and 6to4
/// (`2002:AABB:CCDD::`).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let o = ip.octets();
    if s[..5] == [0; 5] && s[5] == 0xffff {
        return Some(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    if s[0] == 0x0064 && s[1] == 0xff9b && s[2..6] == [0; 4] {
        return Some(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    None
}

/// The addresses of a host, when looked up.
pub type LookingUp = Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send>>;

/// Looks up a host's addresses; the system resolver in production, a fixed
/// table in tests.
pub trait HostLookup: Send + Sync + 'static {
    fn lookup(&self, host: String) -> LookingUp;
}

/// The operating system's resolver (getaddrinfo, on tokio's blocking pool).
pub struct SystemLookup;

impl HostLookup for SystemLookup {
    fn lookup(&self, host: String) -> LookingUp {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host.as_str(), 0)).await?;
            Ok(addrs.map(|a| a.ip()).collect())
        })
    }
}

/// The HTTP client's resolver: resolves, then keeps only public addresses
/// (all of them when private ones are allowed), refusing a name that has
/// none, so a connection can never reach an address the guard refuses.
pub struct GuardedResolver {
    lookup: Arc<dyn HostLookup>,
    allow_private: bool,
}

impl GuardedResolver {
    pub fn new(lookup: Arc<dyn HostLookup>, allow_private: bool) -> Self {
        Self {
            lookup,
            allow_private,
        }
    }

    /// The addresses of `host` that may be connected to.
    pub async fn resolve_host(&self, host: &str) -> io::Result<Vec<IpAddr>> {
        if !self.allow_private && is_local_name(host) {
            return Err(refused_name(host));
        }
        let all = self.lookup.lookup(host.to_owned()).await?;
        let allowed: Vec<IpAddr> = all
            .into_iter()
            .filter(|ip| self.allow_private || is_public(*ip))
            .collect();
        if allowed.is_empty() {
            return Err(refused_name(host));
        }
        Ok(allowed)
    }
}

fn refused_name(host: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!(
            "{}: resolves to no public address (loopback, private and other non-public \
             addresses are refused)",
            shorten(host)
        ),
    )
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let lookup = self.lookup.clone();
        let guard = GuardedResolver::new(lookup, self.allow_private);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let ips = guard.resolve_host(&host).await?;
            // The port is the URL's: the connector sets it on each address.
            let addrs: Addrs = Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn non_public_addresses_are_refused() {
        for s in [
            "0.0.0.0",
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.254",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.2.1",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
            "2001:db8::1",
        ] {
            assert!(!is_public(ip(s)), "{s} must be refused");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for s in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "2002:808:808::",
        ] {
            assert!(is_public(ip(s)), "{s} must pass");
        }
    }

    #[test]
    fn urls_are_checked_for_scheme_userinfo_and_literal_hosts() {
        assert!(check_url("https://example.com/hook?x=1", false).is_ok());
        assert!(check_url("http://93.184.216.34:8080/", false).is_ok());
        for bad in [
            "ftp://example.com/",
            "file:///etc/passwd",
            "gopher://example.com",
            "http://user:pw@example.com/",
            "http://user@example.com/",
            "http://127.0.0.1/",
            "http://localhost:8080/",
            "http://LOCALHOST./",
            "http://api.localhost/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://169.254.169.254/latest/meta-data/",
            "http://10.0.0.1/",
            "http://0x7f000001/",
            "http://2130706433/",
            "not a url",
            "http://",
        ] {
            assert!(check_url(bad, false).is_err(), "{bad} must be refused");
        }
        // Allowed private addresses; never other schemes or credentials.
        assert!(check_url("http://127.0.0.1:9/", true).is_ok());
        assert!(check_url("ftp://127.0.0.1/", true).is_err());
        assert!(check_url("http://u:p@127.0.0.1/", true).is_err());
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_BYTES));
        assert!(check_url(&long, false).is_err());
    }

    struct Table(Vec<IpAddr>);

    impl HostLookup for Table {
        fn lookup(&self, _host: String) -> LookingUp {
            let ips = self.0.clone();
            Box::pin(async move { Ok(ips) })
        }
    }

    #[tokio::test]
    async fn resolved_addresses_are_filtered() {
        let mixed = Arc::new(Table(vec![ip("127.0.0.1"), ip("8.8.8.8")]));
        let guard = GuardedResolver::new(mixed.clone(), false);
        assert_eq!(
            guard.resolve_host("mixed.test").await.unwrap(),
            [ip("8.8.8.8")]
        );
        let private = Arc::new(Table(vec![ip("10.0.0.1"), ip("::1")]));
        let err = GuardedResolver::new(private.clone(), false)
            .resolve_host("rebound.test")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no public address"), "{err}");
        let allowed = GuardedResolver::new(private, true)
            .resolve_host("rebound.test")
            .await
            .unwrap();
        assert_eq!(allowed.len(), 2);
        assert!(guard.resolve_host("localhost").await.is_err());
    }
}
