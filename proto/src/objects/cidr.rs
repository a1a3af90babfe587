//! An IPv4 network in CIDR notation (`10.88.1.0/24`): a node's pod CIDR,
//! whose first host address is the bridge's (the pods' gateway), or the
//! cluster's Service range. Network and broadcast addresses are never
//! handed out.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: Ipv4Addr,
    prefix: u8,
}

impl Cidr {
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    fn mask(&self) -> u32 {
        u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network)
    }

    /// Whether the two share any address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        let prefix = self.prefix.min(other.prefix);
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        u32::from(self.network) & mask == u32::from(other.network) & mask
    }

    /// The bridge's address: the first host address.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    /// The addresses that may be handed out, in order: after the first
    /// (a pod CIDR's gateway; a Service range keeps it too, as Kubernetes
    /// does), before broadcast.
    pub fn assignable(&self) -> impl Iterator<Item = Ipv4Addr> {
        self.assignable_range().map(Ipv4Addr::from)
    }

    /// Whether `ip` is one of [`Cidr::assignable`].
    pub fn is_assignable(&self, ip: Ipv4Addr) -> bool {
        self.assignable_range().contains(&u32::from(ip))
    }

    /// From the address after the first up to broadcast, excluded.
    fn assignable_range(&self) -> std::ops::Range<u32> {
        (u32::from(self.network) + 2)..(u32::from(self.network) | !self.mask())
    }

    /// How many addresses it hands out.
    pub fn capacity(&self) -> u32 {
        (!self.mask()).saturating_sub(2)
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Cidr, String> {
        let bad = || format!("{text:?} is not an IPv4 network in CIDR notation, such as 10.88.1.0/24");
        let (address, prefix) = text.split_once('/').ok_or_else(bad)?;
        let address: Ipv4Addr = address.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if !(8..=30).contains(&prefix) {
            return Err(format!(
                "{text:?}: the prefix must be between /8 and /30, to leave room for a gateway and pods"
            ));
        }
        let cidr = Cidr { network: address, prefix };
        if u32::from(address) & cidr.mask() != u32::from(address) {
            let network = Ipv4Addr::from(u32::from(address) & cidr.mask());
            return Err(format!("{text:?} has host bits set: the network is {network}/{prefix}"));
        }
        Ok(cidr)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_network_gives_its_hosts_after_the_gateway() {
        let cidr: Cidr = "10.88.1.0/24".parse().expect("cidr");
        assert_eq!(cidr.gateway(), Ipv4Addr::new(10, 88, 1, 1));
        let hosts: Vec<Ipv4Addr> = cidr.assignable().collect();
        assert_eq!(hosts.first(), Some(&Ipv4Addr::new(10, 88, 1, 2)));
        assert_eq!(hosts.last(), Some(&Ipv4Addr::new(10, 88, 1, 254)));
        assert_eq!(hosts.len() as u32, cidr.capacity());
        assert!(cidr.is_assignable(Ipv4Addr::new(10, 88, 1, 2)) && cidr.is_assignable(Ipv4Addr::new(10, 88, 1, 254)));
        for outside in [[10, 88, 1, 0], [10, 88, 1, 1], [10, 88, 1, 255], [10, 88, 2, 7]] {
            assert!(!cidr.is_assignable(Ipv4Addr::from(outside)), "{outside:?}");
        }
        assert!(cidr.contains(Ipv4Addr::new(10, 88, 1, 77)) && !cidr.contains(Ipv4Addr::new(10, 88, 2, 1)));
        let wide: Cidr = "10.88.0.0/16".parse().expect("cidr");
        let other: Cidr = "10.88.2.0/24".parse().expect("cidr");
        assert!(cidr.overlaps(&wide) && wide.overlaps(&cidr) && !cidr.overlaps(&other));
        let small: Cidr = "10.0.0.4/30".parse().expect("cidr");
        assert_eq!(small.assignable().collect::<Vec<_>>(), [Ipv4Addr::new(10, 0, 0, 6)]);
        assert_eq!(small.to_string(), "10.0.0.4/30");
    }

    #[test]
    fn bad_networks_are_refused_with_why() {
        for (text, why) in [
            ("10.88.1.0", "CIDR notation"),
            ("10.88.1.300/24", "CIDR notation"),
            ("10.88.1.0/31", "between /8 and /30"),
            ("10.88.1.7/24", "the network is 10.88.1.0/24"),
            ("fd00::/64", "CIDR notation"),
        ] {
            let error = text.parse::<Cidr>().expect_err(text);
            assert!(error.contains(why), "{text}: {error}");
        }
    }
}
