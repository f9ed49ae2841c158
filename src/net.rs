//! Network addresses as nidan counts and compares them.

use std::net::IpAddr;

use ipnet::IpNet;

/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) compare as the IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The key one "address" is counted under: IPv4 as is (or the configured prefix), IPv6 by
/// its /64 (a single subscriber usually holds a whole /64, so per-address keys would be
/// free to rotate). IPv4-mapped IPv6 counts as the IPv4 address.
pub fn network_key(ip: IpAddr, v4: u8, v6: u8) -> String {
    let ip = canonical(ip);
    let len = if ip.is_ipv4() { v4 } else { v6 };
    match IpNet::new(ip, len) {
        Ok(n) if n.prefix_len() == n.max_prefix_len() => ip.to_string(),
        Ok(n) => n.trunc().to_string(),
        Err(_) => ip.to_string(),
    }
}
