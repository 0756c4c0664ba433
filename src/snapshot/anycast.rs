//! `[anycast]` compiled: defaults applied, every value checked, errors
//! pointing into the file. Depends on the config only.

use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;
use toml::Spanned;

use crate::config::raw::{AnycastConfig, ConfigFile};
use crate::config::{Diagnostics, quote_key};

/// The `[anycast]` section, ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnycastSettings {
    /// Prefixes announced while the conditions hold.
    pub prefixes: Vec<IpNet>,
    /// Addresses the self-check queries (all must answer).
    pub check_addresses: Vec<IpAddr>,
    /// Name the self-check asks for, lower case with a trailing dot.
    pub check_name: String,
    /// Query type of the self-check.
    pub check_type: u16,
    /// Time between self-checks.
    pub check_interval: Duration,
    /// Deadline of one self-check.
    pub check_timeout: Duration,
    /// How long every condition must hold before announcing.
    pub hold_down: Duration,
    /// How long to keep answering after withdrawing on SIGTERM.
    pub drain: Duration,
    /// Announce only while at least this many pools are usable.
    pub min_usable_pools: u32,
    /// BIRD's control socket.
    pub bird_socket: PathBuf,
    /// The BIRD protocols enabled to announce and disabled to withdraw.
    pub bird_protocols: Vec<String>,
    /// The guard withdraws when not refreshed for this long.
    pub lease: Duration,
}

/// Defaults, also used by the README's reference.
pub(crate) const DEFAULT_BIRD_SOCKET: &str = "/run/bird/bird.ctl";
pub(crate) const DEFAULT_BIRD_PROTOCOL: &str = "steerdns_anycast";

fn dur(v: &Option<Spanned<crate::config::duration::Duration>>, default: Duration) -> Duration {
    v.as_ref().map_or(default, |d| d.get_ref().0)
}

fn span_of<T>(v: &Option<Spanned<T>>, fallback: std::ops::Range<usize>) -> std::ops::Range<usize> {
    v.as_ref().map_or(fallback, Spanned::span)
}

/// Compile `[anycast]` (if present), recording errors in `d`.
pub(super) fn compile(file: &ConfigFile, d: &mut Diagnostics<'_>) -> Option<AnycastSettings> {
    let section = file.anycast.as_ref()?;
    let whole = section.span();
    let a: &AnycastConfig = section.get_ref();
    let mut prefixes = Vec::new();
    for (i, p) in a.prefixes.get_ref().iter().enumerate() {
        let text = p.get_ref();
        // A bare address means its host prefix.
        let parsed = IpNet::from_str(text)
            .or_else(|_| IpAddr::from_str(text).map(IpNet::from))
            .map_err(|_| ());
        match parsed {
            Ok(net) if net.trunc() != net => d.error(
                p.span(),
                format!("anycast.prefixes[{i}]"),
                format!("{text:?} has host bits set; the network is {}", net.trunc()),
            ),
            Ok(net) => prefixes.push(net),
            Err(()) => d.error(
                p.span(),
                format!("anycast.prefixes[{i}]"),
                format!(
                    "{text:?} is not a prefix; write e.g. \"192.0.2.53/32\" or \"2001:db8::53/128\""
                ),
            ),
        }
    }
    if a.prefixes.get_ref().is_empty() {
        d.error(
            a.prefixes.span(),
            "anycast.prefixes",
            "list at least one prefix to announce",
        );
    }
    let check_addresses = match &a.check_addresses {
        Some(list) => {
            let mut out = Vec::new();
            for (i, s) in list.get_ref().iter().enumerate() {
                match IpAddr::from_str(s.get_ref()) {
                    Ok(ip) if prefixes.iter().any(|p| p.contains(&ip)) => out.push(ip),
                    Ok(ip) => d.error(
                        s.span(),
                        format!("anycast.check_addresses[{i}]"),
                        format!("{ip} is in none of anycast.prefixes: the self-check must ask an announced address"),
                    ),
                    Err(_) => d.error(
                        s.span(),
                        format!("anycast.check_addresses[{i}]"),
                        format!("{:?} is not an IP address", s.get_ref()),
                    ),
                }
            }
            if list.get_ref().is_empty() {
                d.error(list.span(), "anycast.check_addresses", "must not be empty");
            }
            out
        }
        None => {
            let mut out = Vec::new();
            for p in &prefixes {
                if p.prefix_len() == p.max_prefix_len() {
                    out.push(p.addr());
                } else {
                    d.error(
                        a.prefixes.span(),
                        "anycast.check_addresses",
                        format!(
                            "{p} is wider than one address: list the addresses the self-check asks in anycast.check_addresses"
                        ),
                    );
                }
            }
            out
        }
    };
    let check_name = match &a.check_name {
        Some(n) => {
            let mut name = n.get_ref().to_ascii_lowercase();
            if !name.ends_with('.') {
                name.push('.');
            }
            let in_zone = file.zones.keys().any(|z| {
                let mut z = z.to_ascii_lowercase();
                if !z.ends_with('.') {
                    z.push('.');
                }
                name == z || name.ends_with(&format!(".{z}"))
            });
            if !in_zone {
                d.error(
                    n.span(),
                    "anycast.check_name",
                    format!("{name} is in no zone of this config; the self-check needs an answer from a served zone"),
                );
            }
            name
        }
        None => match file.zones.keys().next() {
            Some(z) => {
                let mut z = z.to_ascii_lowercase();
                if !z.ends_with('.') {
                    z.push('.');
                }
                z
            }
            None => {
                d.error(
                    whole.clone(),
                    "anycast",
                    "the self-check asks a served zone, and no zone is configured",
                );
                String::new()
            }
        },
    };
    let check_type = match &a.check_type {
        None => u16::from(hickory_proto::rr::RecordType::SOA),
        Some(t) => match hickory_proto::rr::RecordType::from_str(&t.get_ref().to_ascii_uppercase())
        {
            Ok(rt) => u16::from(rt),
            Err(_) => {
                d.error(
                    t.span(),
                    "anycast.check_type",
                    format!(
                        "{:?} is not a record type; write e.g. \"SOA\" or \"A\"",
                        t.get_ref()
                    ),
                );
                0
            }
        },
    };
    let check_interval = dur(&a.check_interval, Duration::from_secs(1));
    let check_timeout = dur(&a.check_timeout, Duration::from_millis(500));
    let hold_down = dur(&a.hold_down, Duration::from_secs(5));
    let drain = dur(&a.drain, Duration::from_secs(5));
    let lease = dur(&a.lease, Duration::from_secs(1));
    if check_interval.is_zero() || check_interval > Duration::from_secs(10) {
        d.error(
            span_of(&a.check_interval, whole.clone()),
            "anycast.check_interval",
            "must be more than zero and at most 10s (a failure must withdraw quickly)",
        );
    }
    if check_timeout.is_zero() || check_timeout > check_interval {
        d.error(
            span_of(&a.check_timeout, whole.clone()),
            "anycast.check_timeout",
            "must be more than zero and at most check_interval",
        );
    }
    if lease < Duration::from_millis(500) || lease > Duration::from_secs(30) {
        d.error(
            span_of(&a.lease, whole.clone()),
            "anycast.lease",
            "must be between 500ms and 30s (steerdns refreshes the guard every 200ms)",
        );
    }
    let text = |v: &Option<Spanned<String>>, default: &str| {
        v.as_ref()
            .map_or(default.to_string(), |s| s.get_ref().clone())
    };
    let mut bird_protocols = Vec::new();
    match &a.bird_protocols {
        None => bird_protocols.push(DEFAULT_BIRD_PROTOCOL.to_string()),
        Some(list) => {
            if list.get_ref().is_empty() {
                d.error(
                    list.span(),
                    "anycast.bird_protocols",
                    "list the BIRD protocol(s) holding the anycast routes",
                );
            }
            for (i, p) in list.get_ref().iter().enumerate() {
                let name = p.get_ref();
                if name.is_empty()
                    || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    || name.as_bytes()[0].is_ascii_digit()
                {
                    d.error(
                        p.span(),
                        format!("anycast.bird_protocols[{i}]"),
                        format!(
                            "{} is not a BIRD protocol name (letters, digits and _, not starting with a digit)",
                            quote_key(name)
                        ),
                    );
                }
                bird_protocols.push(name.clone());
            }
        }
    }
    let min_usable_pools = a.min_usable_pools.as_ref().map_or(0, |n| *n.get_ref());
    if min_usable_pools as usize > file.pools.len() {
        d.error(
            span_of(&a.min_usable_pools, whole.clone()),
            "anycast.min_usable_pools",
            format!(
                "{min_usable_pools} pools required, but only {} are configured: this node would never announce",
                file.pools.len()
            ),
        );
    }
    let bird_socket = PathBuf::from(text(&a.bird_socket, DEFAULT_BIRD_SOCKET));
    Some(AnycastSettings {
        prefixes,
        check_addresses,
        check_name,
        check_type,
        check_interval,
        check_timeout,
        hold_down,
        drain,
        min_usable_pools,
        bird_socket,
        bird_protocols,
        lease,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::testing::run;

    #[test]
    fn no_section_no_settings() {
        let (a, e) = run("", |_, f, d| compile(f, d));
        assert_eq!((a, e), (None, String::new()));
    }

    #[test]
    fn defaults_apply() {
        let (a, e) = run(
            "[zones.\"lb.example.com\"]\nns = [\"ns1\"]\n\
             [anycast]\nprefixes = [\"192.0.2.53\"]\ncheck_addresses = [\"192.0.2.53\"]\ncheck_name = \"lb.example.com\"\n",
            |_, f, d| compile(f, d),
        );
        assert_eq!(e, "");
        let a = a.unwrap();
        assert_eq!(
            a.prefixes[0].to_string(),
            "192.0.2.53/32",
            "a bare address is its host prefix"
        );
        assert_eq!(a.bird_socket, PathBuf::from(DEFAULT_BIRD_SOCKET));
        assert_eq!(a.bird_protocols, [DEFAULT_BIRD_PROTOCOL]);
        assert_eq!(a.check_interval, Duration::from_secs(1));
        assert!(a.check_timeout <= a.check_interval);
    }

    #[test]
    fn errors_point_at_the_key() {
        let (_, e) = run(
            "[anycast]\nprefixes = [\"192.0.2.1/24\"]\ncheck_addresses = [\"192.0.2.53\"]\ncheck_name = \"lb.example.com\"\n\
             check_interval = \"1m\"\nlease = \"100ms\"\nbird_protocols = [\"1bad\"]\nmin_usable_pools = 2\n",
            |_, f, d| compile(f, d),
        );
        for want in [
            "anycast.prefixes[0]: \"192.0.2.1/24\" has host bits set; the network is 192.0.2.0/24",
            "anycast.check_interval: must be more than zero and at most 10s",
            "anycast.lease: must be between 500ms and 30s",
            "anycast.bird_protocols[0]: ",
            "anycast.min_usable_pools: 2 pools required, but only 0 are configured",
        ] {
            assert!(e.contains(want), "{want} in\n{e}");
        }
    }
}
