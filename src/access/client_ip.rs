//! `[server.client_ip]`: the client's address as a proxy in front of the gateway reports it,
//! with Nexus's semantics: `X-Real-IP` first (when `x_real_ip`), then the `X-Forwarded-For`
//! entry `x_forwarded_for_trusted_hops` places from the right end, else the connection's peer.
//! A header that holds no address where one is looked for is passed over, never trusted
//! partly.

use std::net::IpAddr;

use http::HeaderMap;

use crate::config::ClientIp;

/// The address `headers` report for a request that came from `peer`.
pub fn resolve(config: &ClientIp, headers: &HeaderMap, peer: IpAddr) -> IpAddr {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    if config.x_real_ip
        && let Some(address) = header("x-real-ip").and_then(|value| value.trim().parse().ok())
    {
        return address;
    }
    if let Some(hops) = config.x_forwarded_for_trusted_hops
        && let Some(address) = header("x-forwarded-for")
            .and_then(|value| value.rsplit(',').nth(hops))
            .and_then(|entry| entry.trim().parse().ok())
    {
        return address;
    }
    peer
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| (http::HeaderName::from_static(name), value.parse().unwrap()))
            .collect()
    }

    fn with(x_real_ip: bool, hops: Option<usize>) -> ClientIp {
        ClientIp {
            x_real_ip,
            x_forwarded_for_trusted_hops: hops,
        }
    }

    #[test]
    fn headers_are_ignored_unless_configured() {
        let sent = headers(&[("x-real-ip", "10.0.0.1"), ("x-forwarded-for", "10.0.0.2")]);
        assert_eq!(resolve(&ClientIp::default(), &sent, PEER), PEER);
    }

    #[test]
    fn trusted_hops_count_from_the_right_end() {
        let sent = headers(&[("x-forwarded-for", "203.0.113.7, 10.0.0.2 ,10.0.0.3")]);
        let at = |hops| resolve(&with(false, Some(hops)), &sent, PEER);
        assert_eq!(at(0), "10.0.0.3".parse::<IpAddr>().unwrap());
        assert_eq!(at(1), "10.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(at(2), "203.0.113.7".parse::<IpAddr>().unwrap());
        assert_eq!(at(3), PEER, "fewer entries than hops: the peer");
    }

    #[test]
    fn x_real_ip_comes_first_and_garbage_falls_through() {
        let both = headers(&[
            ("x-real-ip", "2001:db8::1"),
            ("x-forwarded-for", "10.0.0.2"),
        ]);
        let config = with(true, Some(0));
        assert_eq!(
            resolve(&config, &both, PEER),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
        let garbage = headers(&[("x-real-ip", "unknown"), ("x-forwarded-for", "10.0.0.2")]);
        assert_eq!(
            resolve(&config, &garbage, PEER),
            "10.0.0.2".parse::<IpAddr>().unwrap()
        );
        let bad_entry = headers(&[("x-forwarded-for", "10.0.0.2, not-an-ip")]);
        assert_eq!(resolve(&config, &bad_entry, PEER), PEER);
    }
}
