//! The serde mirror of `[rrl]` and `[cookies]`: protection of the DNS
//! listeners against abuse (response rate limiting, DNS Cookies).

use serde::Deserialize;
use toml::Spanned;

use super::raw::SString;

/// `[rrl]`: response rate limiting per client network.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RrlConfig {
    /// Off by default (see the README for why).
    #[serde(default)]
    pub enabled: bool,
    /// Answers (NOERROR, NODATA, referrals) per second per network.
    pub responses_per_second: Option<Spanned<u32>>,
    /// NXDOMAIN answers per second per network (default: responses_per_second).
    pub nxdomains_per_second: Option<Spanned<u32>>,
    /// Error answers per second per network (default: responses_per_second).
    pub errors_per_second: Option<Spanned<u32>>,
    /// Every Nth limited response is sent truncated (0 never, 1 always).
    pub slip: Option<Spanned<u8>>,
    /// IPv4 clients are grouped by this prefix length.
    pub ipv4_prefix: Option<Spanned<u8>>,
    /// IPv6 clients are grouped by this prefix length.
    pub ipv6_prefix: Option<Spanned<u8>>,
    /// Networks never limited.
    #[serde(default)]
    pub exempt: Vec<SString>,
    /// Buckets in the table (memory: 8 bytes each).
    pub table_size: Option<Spanned<usize>>,
}

/// `[cookies]`: DNS Cookies (RFC 7873, server cookies per RFC 9018).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CookiesConfig {
    /// On by default.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// File with the shared secret (32 hex digits on the first line) and
    /// optionally the previous secret (second line), accepted during a
    /// rotation. Relative to the config file. Absent: a random secret per
    /// process (cookies then do not survive a restart nor cross nodes).
    pub secret_file: Option<SString>,
}

impl Default for CookiesConfig {
    fn default() -> Self {
        CookiesConfig {
            enabled: true,
            secret_file: None,
        }
    }
}

fn yes() -> bool {
    true
}
