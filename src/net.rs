//! Address prefixes: the one helper the engine (ECS) and `select`
//! (scopes) share. Depends on nothing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Zero the bits of `ip` past `len`.
pub(crate) fn mask(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let m = if len == 0 {
                0
            } else {
                u32::MAX << (32 - len.min(32) as u32)
            };
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & m))
        }
        IpAddr::V6(a) => {
            let m = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len.min(128) as u32)
            };
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & m))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_truncates() {
        let ip: IpAddr = "81.2.69.77".parse().unwrap();
        assert_eq!(mask(ip, 24), "81.2.69.0".parse::<IpAddr>().unwrap());
        assert_eq!(mask(ip, 0), "0.0.0.0".parse::<IpAddr>().unwrap());
        let v6: IpAddr = "2001:218:1:2::1".parse().unwrap();
        assert_eq!(mask(v6, 32), "2001:218::".parse::<IpAddr>().unwrap());
    }
}
