//! The check of one monitor by type: HTTP(S) request and expectations,
//! TLS settings, DNS question and expected rcodes.

use std::str::FromStr;

use hickory_proto::rr::RecordType;

use crate::config::raw::{MonitorConfig, MonitorKind};
use crate::config::{Diagnostics, Source};
use crate::health::spec::{self as check, CheckKind, DnsCheck, HttpCheck, StatusSet, TlsCheck};
use crate::health::tls::build_tls_config;

/// An `http` or `https` monitor's check; `ok` turns false on errors that
/// still let the rest be checked.
pub(super) fn http_check(
    source: &Source,
    m: &MonitorConfig,
    key: &str,
    d: &mut Diagnostics<'_>,
    ok: &mut bool,
) -> Option<CheckKind> {
    let kind = *m.kind.get_ref();
    let expect_status = match &m.expect_status {
        Some(s) => match StatusSet::parse(s.get_ref()) {
            Ok(set) => set,
            Err(e) => {
                d.error(s.span(), format!("{key}.expect_status"), e);
                return None;
            }
        },
        None => StatusSet::parse("2xx").ok()?,
    };
    let path = m
        .path
        .as_ref()
        .map_or_else(|| "/".to_string(), |p| p.get_ref().clone());
    if !path.starts_with('/') {
        if let Some(p) = &m.path {
            d.error(p.span(), format!("{key}.path"), "must start with /");
        }
        *ok = false;
    }
    let method = m
        .method
        .as_ref()
        .map_or_else(|| "GET".to_string(), |x| x.get_ref().to_ascii_uppercase());
    if !method.bytes().all(|b| b.is_ascii_uppercase()) || method.is_empty() {
        if let Some(x) = &m.method {
            d.error(
                x.span(),
                format!("{key}.method"),
                "not an HTTP method (GET, HEAD, ...)",
            );
        }
        *ok = false;
    }
    let h = HttpCheck {
        method,
        path,
        host: m.host.as_ref().map(|h| h.get_ref().clone()),
        headers: m
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        expect_status,
        expect_body: m.expect_body.as_ref().map(|b| b.get_ref().clone()),
        follow_redirects: m.follow_redirects,
        body_limit: check::DEFAULT_BODY_LIMIT,
        user_agent: check::default_user_agent(),
    };
    if let Err(e) = h.validate() {
        d.error(m.kind.span(), key, e);
        return None;
    }
    Some(if kind == MonitorKind::Http {
        CheckKind::Http(h)
    } else {
        let ca = m.ca_file.as_ref().map(|c| source.dir().join(c.get_ref()));
        match build_tls_config(m.tls_verify, ca.as_deref()) {
            Ok(config) => CheckKind::Https(
                h,
                TlsCheck {
                    config,
                    sni: m.sni.as_ref().map(|s| s.get_ref().clone()),
                },
            ),
            Err(e) => {
                let span = m.ca_file.as_ref().map_or(m.kind.span(), |c| c.span());
                d.error(span, format!("{key}.ca_file"), e);
                return None;
            }
        }
    })
}

/// A `dns` monitor's check; `ok` as for [`http_check`].
pub(super) fn dns_check(
    m: &MonitorConfig,
    key: &str,
    d: &mut Diagnostics<'_>,
    ok: &mut bool,
) -> Option<CheckKind> {
    let Some(qname) = &m.query_name else {
        d.error(
            m.kind.span(),
            format!("{key}.query_name"),
            "a dns monitor needs query_name = \"name to ask\"",
        );
        return None;
    };
    let qtype = match &m.query_type {
        Some(t) => match RecordType::from_str(&t.get_ref().to_ascii_uppercase()) {
            Ok(rt) => u16::from(rt),
            Err(_) => {
                d.error(
                    t.span(),
                    format!("{key}.query_type"),
                    format!("unknown record type {:?}", t.get_ref()),
                );
                return None;
            }
        },
        None => 1,
    };
    let mut rcodes = Vec::new();
    if let Some(list) = &m.expect_rcode {
        for r in list.get_ref() {
            match check::parse_rcode(r) {
                Some(v) => rcodes.push(v),
                None => {
                    d.error(
                        list.span(),
                        format!("{key}.expect_rcode"),
                        format!("unknown rcode {r:?} (NOERROR, NXDOMAIN, SERVFAIL, REFUSED, ...)"),
                    );
                    *ok = false;
                }
            }
        }
    } else {
        rcodes.push(0);
    }
    Some(CheckKind::Dns(DnsCheck {
        qname: qname.get_ref().clone(),
        qtype,
        expect_rcodes: rcodes,
        expect_answer: m.expect_answer.as_ref().map(|a| a.get_ref().clone()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::testing::run;

    fn check(table: &str) -> ((Option<CheckKind>, bool), String) {
        run(&format!("[monitors.m]\n{table}"), |s, f, d| {
            let m = f.monitors["m"].get_ref();
            let mut ok = true;
            let c = match m.kind.get_ref() {
                MonitorKind::Dns => dns_check(m, "k", d, &mut ok),
                _ => http_check(s, m, "k", d, &mut ok),
            };
            (c, ok)
        })
    }

    #[test]
    fn http_defaults_and_values() {
        let ((c, ok), e) = check("type = \"http\"\n");
        assert_eq!((ok, e), (true, String::new()));
        let Some(CheckKind::Http(h)) = c else {
            panic!("{c:?}")
        };
        assert_eq!((h.method.as_str(), h.path.as_str()), ("GET", "/"));
        let ((c, _), e) = check(
            "type = \"http\"\nmethod = \"head\"\npath = \"/up\"\nexpect_status = \"200,204\"\n",
        );
        assert_eq!(e, "");
        let Some(CheckKind::Http(h)) = c else {
            panic!("{c:?}")
        };
        assert_eq!((h.method.as_str(), h.path.as_str()), ("HEAD", "/up"));
        let ((c, _), e) = check("type = \"https\"\nsni = \"origin.example\"\n");
        assert_eq!(e, "");
        assert!(
            matches!(c, Some(CheckKind::Https(_, ref t)) if t.sni.as_deref() == Some("origin.example"))
        );
    }

    #[test]
    fn http_errors() {
        let ((c, ok), e) = check("type = \"http\"\npath = \"up\"\nmethod = \"G-T\"\n");
        assert!(c.is_none() || !ok, "not accepted");
        assert!(
            e.contains("k.path: must start with /") && e.contains("k.method: not an HTTP method"),
            "{e}"
        );
        let ((c, _), e) = check("type = \"http\"\nexpect_status = \"abc\"\n");
        assert!(c.is_none() && e.contains("k.expect_status: "), "{e}");
        let ((c, _), e) = check("type = \"https\"\nca_file = \"no-such-ca.pem\"\n");
        assert!(c.is_none() && e.contains("k.ca_file: "), "{e}");
    }

    #[test]
    fn dns_checks() {
        let ((c, ok), e) = check(
            "type = \"dns\"\nquery_name = \"lb.example.com.\"\nquery_type = \"aaaa\"\nexpect_rcode = [\"NOERROR\", \"NXDOMAIN\"]\n",
        );
        assert_eq!((ok, e), (true, String::new()));
        let Some(CheckKind::Dns(q)) = c else {
            panic!("{c:?}")
        };
        assert_eq!((q.qtype, q.expect_rcodes.as_slice()), (28, &[0u16, 3][..]));
        let ((c, _), _) = check("type = \"dns\"\nquery_name = \"x.\"\n");
        assert!(matches!(c, Some(CheckKind::Dns(ref q)) if q.qtype == 1 && q.expect_rcodes == [0]));
        let ((c, _), e) = check("type = \"dns\"\n");
        assert!(
            c.is_none() && e.contains("k.query_name: a dns monitor needs query_name"),
            "{e}"
        );
        let ((c, _), e) = check("type = \"dns\"\nquery_name = \"x.\"\nquery_type = \"BOGUS\"\n");
        assert!(
            c.is_none() && e.contains("k.query_type: unknown record type \"BOGUS\""),
            "{e}"
        );
        let ((_, ok), e) =
            check("type = \"dns\"\nquery_name = \"x.\"\nexpect_rcode = [\"MAYBE\"]\n");
        assert!(
            !ok && e.contains("k.expect_rcode: unknown rcode \"MAYBE\""),
            "{e}"
        );
    }
}
