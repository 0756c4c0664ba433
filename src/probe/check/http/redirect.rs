//! Where a redirect of an HTTP(S) check leads: only the same scheme, host
//! and port are followed (and always to the same address).

use super::Request;
use super::request::is_origin_form;

/// Where a redirect leads: the new path on the same scheme, host and port,
/// or why it is not followed.
pub(super) fn resolve_redirect(loc: &str, req: &Request<'_>) -> Result<String, String> {
    let loc = loc.split('#').next().unwrap_or_default().trim();
    let scheme = if req.https { "https" } else { "http" };
    let rest = if let Some((s, rest)) = loc.split_once("://")
        && !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    {
        if !s.eq_ignore_ascii_case(scheme) {
            return Err(format!("to scheme {s}"));
        }
        Some(rest)
    } else {
        loc.strip_prefix("//")
    };
    let path = match rest {
        Some(rest) => {
            let split = rest.find(['/', '?']).unwrap_or(rest.len());
            let (auth, path) = rest.split_at(split);
            if !same_authority(auth, req.authority, req.default_port) {
                return Err(format!("to {auth}"));
            }
            if path.starts_with('?') || path.is_empty() {
                format!("/{path}")
            } else {
                path.to_string()
            }
        }
        None if loc.starts_with('/') => loc.to_string(),
        None => {
            // Relative reference: resolve against the current path's
            // directory (dot segments are left to the server).
            let cur = req.path.split('?').next().unwrap_or("/");
            if loc.starts_with('?') {
                format!("{cur}{loc}")
            } else {
                let dir = &cur[..cur.rfind('/').map_or(0, |i| i + 1)];
                format!("{dir}{loc}")
            }
        }
    };
    if !is_origin_form(&path) {
        return Err(format!("to invalid location {loc:?}"));
    }
    Ok(path)
}

/// Split `host[:port]` (IPv6 in brackets).
fn split_authority(a: &str, default_port: u16) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = a.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        (format!("[{h}]"), after)
    } else {
        match a.rfind(':') {
            Some(i) => (a[..i].to_string(), &a[i..]),
            None => (a.to_string(), ""),
        }
    };
    let port = match port.strip_prefix(':') {
        None if port.is_empty() => default_port,
        None => return None,
        Some("") => default_port,
        Some(p) => p.parse().ok()?,
    };
    Some((host.trim_end_matches('.').to_ascii_lowercase(), port))
}

fn same_authority(a: &str, ours: &str, default_port: u16) -> bool {
    !a.contains('@')
        && split_authority(a, default_port)
            .is_some_and(|x| split_authority(ours, default_port) == Some(x))
}

#[cfg(test)]
mod tests {
    use super::super::tests::req;
    use super::*;

    #[test]
    fn redirects_resolve_only_to_the_same_origin() {
        let r = req("/a/b?q=1", "example.com", false);
        assert_eq!(resolve_redirect("/x", &r).unwrap(), "/x");
        assert_eq!(resolve_redirect("c", &r).unwrap(), "/a/c");
        assert_eq!(resolve_redirect("?z", &r).unwrap(), "/a/b?z");
        assert_eq!(
            resolve_redirect("http://EXAMPLE.com/y#frag", &r).unwrap(),
            "/y"
        );
        assert_eq!(
            resolve_redirect("http://example.com:80?k", &r).unwrap(),
            "/?k"
        );
        assert_eq!(resolve_redirect("//example.com/z", &r).unwrap(), "/z");
        assert_eq!(resolve_redirect("http://example.com", &r).unwrap(), "/");
        assert!(resolve_redirect("https://example.com/", &r).is_err());
        assert!(resolve_redirect("http://example.com:8080/", &r).is_err());
        assert!(resolve_redirect("http://other.example/", &r).is_err());
        assert!(resolve_redirect("http://user@example.com/", &r).is_err());
        assert!(resolve_redirect("//other.example/", &r).is_err());
        assert!(resolve_redirect("/bad path", &r).is_err());

        let r = req("/", "[::1]:8443", true);
        assert_eq!(resolve_redirect("https://[::1]:8443/h", &r).unwrap(), "/h");
        assert!(resolve_redirect("https://[::1]/h", &r).is_err());
    }
}
