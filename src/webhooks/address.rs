//! Which addresses a webhook endpoint may reach. An endpoint is an address typed by whoever holds
//! an API key; left unchecked it would let them make hearback call its own network (a database's
//! HTTP port, a cloud metadata service). So private, loopback, link-local and reserved addresses
//! are refused unless the configuration allows their network, and the check is made on the
//! address actually connected to: names go through [`GuardedResolver`], which drops refused
//! addresses after resolution, and literal addresses are checked by [`AddressPolicy::check_url`]
//! before the request. Redirects are not followed (a webhook is not re-sent elsewhere), so no
//! later hop escapes the check.

use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, LazyLock};

/// Networks that are not the public Internet (RFC 6890 and its successors).
static NOT_PUBLIC: LazyLock<Vec<IpNet>> = LazyLock::new(|| {
    [
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/128",
        "::1/128",
        "100::/64",
        "2001:db8::/32",
        "fc00::/7",
        "fe80::/10",
        "ff00::/8",
    ]
    .iter()
    .map(|net| net.parse().expect("a valid network"))
    .collect()
});

/// Whether `ip` is on the public Internet. An IPv6 address that carries an IPv4 one (mapped,
/// or NAT64) is judged by the IPv4 address it reaches.
pub fn is_public(ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None if v6.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0] => {
                let [.., a, b, c, d] = v6.octets();
                IpAddr::V4([a, b, c, d].into())
            }
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    };
    !NOT_PUBLIC.iter().any(|net| net.contains(&ip))
}

/// The public Internet plus the networks the configuration allows
/// (`webhooks.allow_networks`).
#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    allowed: Vec<IpNet>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressRefused {
    #[error("{0} is a private or reserved address; allow its network in webhooks.allow_networks")]
    Address(IpAddr),
    #[error("{0} resolves only to private or reserved addresses")]
    Name(String),
    #[error("the URL has no host")]
    NoHost,
}

impl AddressPolicy {
    pub fn new(allowed: Vec<IpNet>) -> Self {
        Self { allowed }
    }

    pub fn permits(&self, ip: IpAddr) -> bool {
        is_public(ip) || self.allowed.iter().any(|net| net.contains(&ip))
    }

    /// Refuses a URL whose host is a literal address the policy does not permit (names are
    /// checked when they are resolved).
    pub fn check_url(&self, url: &url::Url) -> Result<(), AddressRefused> {
        let ip = match url.host().ok_or(AddressRefused::NoHost)? {
            url::Host::Domain(_) => return Ok(()),
            url::Host::Ipv4(v4) => IpAddr::V4(v4),
            url::Host::Ipv6(v6) => IpAddr::V6(v6),
        };
        if self.permits(ip) {
            Ok(())
        } else {
            Err(AddressRefused::Address(ip))
        }
    }
}

/// reqwest's resolver for webhook requests: the system's resolution, less the addresses the
/// policy refuses; a name left with none fails the request before any connection.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    policy: Arc<AddressPolicy>,
}

impl GuardedResolver {
    pub fn new(policy: Arc<AddressPolicy>) -> Self {
        Self { policy }
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = Arc::clone(&self.policy);
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|addr| policy.permits(addr.ip()))
                .collect();
            if found.is_empty() {
                return Err(Box::new(AddressRefused::Name(host)) as _);
            }
            Ok(Box::new(found.into_iter()) as reqwest::dns::Addrs)
        })
    }
}
