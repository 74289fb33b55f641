//! Fetching remote JWKS documents safely: no redirects, a time limit, a size cap on the body,
//! and (with `block_local_jwks` / `jwks_reject_ip_ranges`) no connection to a refused address:
//! the host is resolved here and every address checked before connecting, so a JWKS URI cannot
//! be pointed at the service's own network (as PowerSync refuses local JWKS hosts).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::jwks::JwksError;

/// Largest JWKS document read (real ones are a few KiB).
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// Time limit of one JWKS fetch.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Addresses a JWKS host may not resolve to.
#[derive(Debug, Clone, Default)]
pub struct IpPolicy {
    refused: Vec<IpNet>,
}

/// Loopback, private, link-local, unique-local, CGNAT and unspecified ranges.
const LOCAL_RANGES: [&str; 11] = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "::/128",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
];

impl IpPolicy {
    /// `block_local`: refuse [`LOCAL_RANGES`]; `ranges`: CIDRs (or `local`) to refuse as well.
    pub fn new(block_local: bool, ranges: &[String]) -> Result<IpPolicy, String> {
        let mut refused = Vec::new();
        let mut add_local = block_local;
        for r in ranges {
            if r.trim().eq_ignore_ascii_case("local") {
                add_local = true;
                continue;
            }
            let net = r
                .trim()
                .parse::<IpNet>()
                .or_else(|_| r.trim().parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("invalid IP range {r:?} in jwks_reject_ip_ranges"))?;
            refused.push(net);
        }
        if add_local {
            refused.extend(LOCAL_RANGES.iter().filter_map(|r| r.parse::<IpNet>().ok()));
        }
        Ok(IpPolicy { refused })
    }

    pub fn is_empty(&self) -> bool {
        self.refused.is_empty()
    }

    /// Whether `ip` (IPv4-mapped IPv6 addresses as IPv4) falls in a refused range.
    pub fn refuses(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.refused.iter().any(|net| net.contains(&ip))
    }
}

/// A resolver that drops refused addresses (and fails when none is left).
struct GuardedResolver {
    policy: Arc<IpPolicy>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = all
                .into_iter()
                .filter(|a| !policy.refuses(a.ip()))
                .collect();
            if allowed.is_empty() {
                return Err(format!("{host} resolves only to refused addresses").into());
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

/// The HTTP client of remote JWKS fetches.
#[derive(Debug, Clone)]
pub struct JwksClient {
    client: reqwest::Client,
    policy: Arc<IpPolicy>,
}

impl JwksClient {
    pub fn new(policy: IpPolicy) -> Result<JwksClient, reqwest::Error> {
        let policy = Arc::new(policy);
        // HTTPS through rustls' process default provider (ring).
        riptide_pg::install_default_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(FETCH_TIMEOUT);
        if !policy.is_empty() {
            builder = builder.dns_resolver(Arc::new(GuardedResolver {
                policy: policy.clone(),
            }));
        }
        Ok(JwksClient {
            client: builder.build()?,
            policy,
        })
    }

    /// The JSON document at `uri`: a 2xx answer (redirects are not followed) of at most
    /// [`MAX_JWKS_BYTES`].
    pub async fn get(&self, uri: &str) -> Result<serde_json::Value, JwksError> {
        let url = reqwest::Url::parse(uri).map_err(|_| JwksError::BadUri {
            uri: uri.to_owned(),
        })?;
        // An IP literal never reaches the resolver: check it here.
        let literal = url
            .host_str()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
            .and_then(|h| h.parse::<IpAddr>().ok());
        if literal.is_some_and(|ip| self.policy.refuses(ip)) {
            return Err(JwksError::RefusedAddress {
                uri: uri.to_owned(),
            });
        }
        let fetch_err = |source| JwksError::Fetch {
            uri: uri.to_owned(),
            source,
        };
        let mut response = self.client.get(url).send().await.map_err(fetch_err)?;
        if !response.status().is_success() {
            return Err(JwksError::FetchStatus {
                uri: uri.to_owned(),
                status: response.status().as_u16(),
            });
        }
        let too_large = || JwksError::TooLarge {
            uri: uri.to_owned(),
            limit: MAX_JWKS_BYTES,
        };
        if response
            .content_length()
            .is_some_and(|n| n > MAX_JWKS_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(fetch_err)? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|_| JwksError::NotJson {
            uri: uri.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_ranges_and_listed_ranges() {
        let p = IpPolicy::new(true, &[]).unwrap();
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "172.20.0.1",
            "169.254.169.254",
            "::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(p.refuses(ip.parse().unwrap()), "{ip}");
        }
        assert!(!p.refuses("93.184.216.34".parse().unwrap()));
        let listed = IpPolicy::new(false, &["93.184.0.0/16".into()]).unwrap();
        assert!(listed.refuses("93.184.216.34".parse().unwrap()));
        assert!(!listed.refuses("127.0.0.1".parse().unwrap()));
        assert!(
            IpPolicy::new(false, &["local".into()])
                .unwrap()
                .refuses("10.0.0.1".parse().unwrap())
        );
        assert!(IpPolicy::new(false, &["not-a-range".into()]).is_err());
        assert!(IpPolicy::new(false, &[]).unwrap().is_empty());
    }
}
