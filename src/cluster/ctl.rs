//! `steerdns ctl`: set an endpoint's admin state through a running node's
//! API, finding its address and token in the node's config file.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

fn encode_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The address to reach an API listening on `listen` (a wildcard listen
/// address is reached on loopback).
pub fn api_address(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(a) if a.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), listen.port())
        }
        IpAddr::V6(a) if a.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), listen.port())
        }
        _ => listen,
    }
}

/// `POST /api/v1/endpoints/{pool}/{endpoint}/state` to `api` with `token`;
/// the response body on success, else the status and body as the error.
pub fn set_state(
    api: SocketAddr,
    token: Option<&str>,
    pool: &str,
    endpoint: &str,
    state: &str,
) -> Result<String, String> {
    let body = serde_json::json!({ "state": state }).to_string();
    let mut req = format!(
        "POST /api/v1/endpoints/{}/{}/state HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n",
        encode_segment(pool),
        encode_segment(endpoint),
        body.len()
    );
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    let mut s = TcpStream::connect_timeout(&api, Duration::from_secs(5))
        .map_err(|e| format!("connecting to the API at {api}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .and_then(|()| s.write_all(req.as_bytes()))
        .map_err(|e| format!("{api}: {e}"))?;
    let mut buf = Vec::new();
    s.take(1 << 20)
        .read_to_end(&mut buf)
        .map_err(|e| format!("{api}: {e}"))?;
    let text = String::from_utf8_lossy(&buf);
    let code: u16 = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b).trim();
    if code == 200 {
        Ok(body.to_string())
    } else {
        Err(format!("{api} answered {code}: {body}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_and_addresses() {
        assert_eq!(encode_segment("eu/1 x"), "eu%2F1%20x");
        assert_eq!(encode_segment("2001:db8::1"), "2001:db8::1");
        assert_eq!(
            api_address("0.0.0.0:9153".parse().unwrap()),
            "127.0.0.1:9153".parse().unwrap()
        );
        assert_eq!(
            api_address("[::]:9".parse().unwrap()),
            "[::1]:9".parse().unwrap()
        );
        assert_eq!(
            api_address("10.0.0.1:9".parse().unwrap()),
            "10.0.0.1:9".parse().unwrap()
        );
    }
}
