//! Webhook settings, as compiled from `[notify]` (the sender is
//! `probe::notify`).

use std::sync::Arc;

use rustls::pki_types::ServerName;

use super::spec::{is_field_value, is_token};

/// Where and how webhooks are delivered; replaced as a whole on reload.
#[derive(Debug, Clone, Default)]
pub struct Webhooks {
    /// Target URLs.
    pub urls: Vec<WebhookUrl>,
    /// Extra request headers, sent after the fixed ones.
    pub headers: Vec<(String, String)>,
    /// Sent as `Authorization: Bearer <token>`.
    pub bearer_token: Option<String>,
    /// TLS client configuration for `https://` URLs (built by
    /// [`build_tls_config`](crate::health::tls::build_tls_config)).
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// A parsed webhook URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl {
    /// The URL as configured (for logs).
    pub url: String,
    /// `https://` (else `http://`).
    pub https: bool,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// Port (default 80 or 443).
    pub port: u16,
    /// Request target in origin form (`/path?query`).
    pub path: String,
}

/// Headers the webhook sender sets itself.
const RESERVED_HEADERS: [&str; 6] = [
    "host",
    "user-agent",
    "content-type",
    "content-length",
    "transfer-encoding",
    "connection",
];

/// Check one configured webhook header; `bearer` says whether a bearer
/// token is configured (then `Authorization` is taken).
pub fn validate_header(name: &str, value: &str, bearer: bool) -> Result<(), String> {
    if !is_token(name) {
        return Err(format!("header name {name:?} is not a token"));
    }
    if RESERVED_HEADERS
        .iter()
        .any(|r| name.eq_ignore_ascii_case(r))
    {
        return Err(format!("header {name:?} is set by the webhook sender"));
    }
    if bearer && name.eq_ignore_ascii_case("authorization") {
        return Err("Authorization is set by bearer_token; use one of them".to_string());
    }
    if !is_field_value(value) {
        return Err(format!("header {name} has control characters"));
    }
    Ok(())
}

/// Parse `http[s]://host[:port][/path]`.
pub fn parse_webhook_url(url: &str) -> Result<WebhookUrl, String> {
    let (https, rest) = if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else {
        return Err(format!(
            "{url:?}: webhook URLs start with http:// or https://"
        ));
    };
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (hostport, path) = rest.split_at(split);
    let path = if path.starts_with('?') || path.is_empty() {
        format!("/{path}")
    } else {
        path.to_string()
    };
    if hostport.contains('@') {
        return Err(format!(
            "{url:?}: user info in webhook URLs is not supported"
        ));
    }
    let default_port = if https { "443" } else { "80" };
    let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
        let (h, p) = h
            .split_once(']')
            .ok_or_else(|| format!("{url:?}: bad IPv6 host"))?;
        let port = match p.strip_prefix(':') {
            Some(port) => port,
            None if p.is_empty() => default_port,
            None => return Err(format!("{url:?}: bad IPv6 host")),
        };
        (h.to_string(), port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p),
            None => (hostport.to_string(), default_port),
        }
    };
    let port: u16 = port.parse().map_err(|_| format!("{url:?}: bad port"))?;
    if host.is_empty() {
        return Err(format!("{url:?}: no host"));
    }
    let target: hyper::Uri = path.parse().map_err(|_| format!("{url:?}: bad path"))?;
    if target.path_and_query().map(|p| p.as_str()) != Some(path.as_str()) {
        return Err(format!("{url:?}: bad path"));
    }
    if https {
        ServerName::try_from(host.as_str())
            .map_err(|_| format!("{url:?}: {host:?} is not a valid TLS server name"))?;
    }
    Ok(WebhookUrl {
        url: url.to_string(),
        https,
        host,
        port,
        path,
    })
}
