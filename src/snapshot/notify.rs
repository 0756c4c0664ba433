//! `[notify]` → webhook settings.

use super::NotifySettings;
use crate::config::raw::ConfigFile;
use crate::config::{Diagnostics, quote_key};
use crate::health::tls::build_tls_config;
use crate::health::webhook::{Webhooks, parse_webhook_url, validate_header};

/// Compile `[notify]`.
pub(super) fn compile_notify(file: &ConfigFile, d: &mut Diagnostics<'_>) -> NotifySettings {
    let n = &file.notify;
    let mut urls = Vec::new();
    for (i, u) in n.webhooks.iter().enumerate() {
        match parse_webhook_url(u.get_ref()) {
            Ok(url) => urls.push(url),
            Err(e) => d.error(u.span(), format!("notify.webhooks[{i}]"), e),
        }
    }
    let bearer_token = n.bearer_token.as_ref().map(|t| {
        if t.get_ref().is_empty() || !crate::health::spec::is_field_value(t.get_ref()) {
            d.error(
                t.span(),
                "notify.bearer_token",
                "must be non-empty, without control characters",
            );
        }
        t.get_ref().clone()
    });
    let mut headers = Vec::new();
    for (name, value) in &n.headers {
        match validate_header(name, value.get_ref(), bearer_token.is_some()) {
            Ok(()) => headers.push((name.clone(), value.get_ref().clone())),
            Err(e) => d.error(
                value.span(),
                format!("notify.headers.{}", quote_key(name)),
                e,
            ),
        }
    }
    // Only built when needed: it reads the system trust store.
    let verify = n.tls_verify.as_ref().is_none_or(|v| *v.get_ref());
    let tls = if urls.iter().any(|u| u.https) || n.ca_file.is_some() {
        let ca = n
            .ca_file
            .as_ref()
            .map(|c| d.source().dir().join(c.get_ref()));
        match build_tls_config(verify, ca.as_deref()) {
            Ok(config) => Some(config),
            Err(e) => {
                let span = n
                    .ca_file
                    .as_ref()
                    .map(|c| c.span())
                    .or_else(|| n.tls_verify.as_ref().map(|v| v.span()))
                    .unwrap_or_default();
                d.error(span, "notify.ca_file", e);
                None
            }
        }
    } else {
        None
    };
    NotifySettings {
        webhooks: Webhooks {
            urls,
            headers,
            bearer_token,
            tls,
        },
        queue_size: n.queue_size.unwrap_or(1000).max(1),
        attempts: n.retries.unwrap_or(3).max(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::testing::run;

    #[test]
    fn webhooks_and_defaults() {
        let (n, e) = run(
            "[notify]\nwebhooks = [\"http://127.0.0.1:9/hook\", \"ftp://x\"]\n",
            |_, f, d| compile_notify(f, d),
        );
        assert!(e.contains("notify.webhooks[1]: "), "{e}");
        assert_eq!(n.webhooks.urls.len(), 1);
        assert_eq!((n.queue_size, n.attempts), (1000, 3));
        let (n, _) = run("[notify]\nqueue_size = 0\nretries = 0\n", |_, f, d| {
            compile_notify(f, d)
        });
        assert_eq!((n.queue_size, n.attempts), (1, 1), "at least one");
    }
}

#[cfg(test)]
mod webhook_tests {
    use std::path::PathBuf;

    use crate::snapshot::NotifySettings;

    /// Build a snapshot with this `[notify]` table; the settings or the
    /// rendered errors.
    fn notify(table: &str) -> Result<NotifySettings, String> {
        notify_in(PathBuf::from("c.toml"), table)
    }

    fn notify_in(path: PathBuf, table: &str) -> Result<NotifySettings, String> {
        let text = format!(
            "[server]\nnode_name = \"a\"\n[zones.\"lb.example.com\"]\nns = [\"ns1\"]\n\
             [pools.p]\nendpoints = [{{ address = \"192.0.2.1\" }}]\n[notify]\n{table}"
        );
        let source = crate::config::Source { path, text };
        crate::config::parse(&source)
            .and_then(|f| crate::snapshot::build(&source, &f, 1))
            .map(|s| s.notify.clone())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn old_notify_tables_stay_valid() {
        let n = notify("webhooks = [\"http://127.0.0.1:9000/hook\"]\nretries = 2\n").unwrap();
        assert_eq!(n.webhooks.urls.len(), 1);
        assert!(!n.webhooks.urls[0].https);
        assert_eq!(n.attempts, 2);
        assert!(n.webhooks.headers.is_empty() && n.webhooks.bearer_token.is_none());
        // No https:// webhook: no TLS configuration (no trust store read).
        assert!(n.webhooks.tls.is_none());
    }

    #[test]
    fn https_headers_and_token() {
        let n = notify(
            "webhooks = [\"https://hooks.example.com/x\", \"http://127.0.0.1:9/y\"]\n\
             bearer_token = \"tok\"\nheaders = { \"X-Team\" = \"dns\", \"X-Env\" = \"prod\" }\n",
        )
        .unwrap();
        let w = &n.webhooks;
        assert!(w.urls[0].https && !w.urls[1].https);
        assert_eq!(w.bearer_token.as_deref(), Some("tok"));
        assert_eq!(
            w.headers,
            [
                ("X-Env".to_string(), "prod".to_string()),
                ("X-Team".to_string(), "dns".to_string())
            ]
        );
        assert!(w.tls.is_some());
        // tls_verify = false is allowed, without ca_file.
        assert!(
            notify("webhooks = [\"https://h/\"]\ntls_verify = false\n")
                .unwrap()
                .webhooks
                .tls
                .is_some()
        );
    }

    #[test]
    fn ca_file_is_relative_to_the_config() {
        let cert = rcgen::generate_simple_self_signed(vec!["ca.test".to_string()]).unwrap();
        let ca_file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(ca_file.path(), cert.cert.pem()).unwrap();
        let dir = ca_file.path().parent().unwrap().to_path_buf();
        let name = ca_file.path().file_name().unwrap().to_str().unwrap();
        let n = notify_in(
            dir.join("c.toml"),
            &format!("webhooks = [\"https://127.0.0.1:1/\"]\nca_file = \"{name}\"\n"),
        )
        .unwrap();
        assert!(n.webhooks.tls.is_some());
    }

    #[test]
    fn bad_notify_values_point_at_the_key() {
        // [notify] starts on line 7.
        for (table, place, key, why) in [
            (
                "webhooks = [\"ftp://h/\"]\n",
                "c.toml:8:13",
                "notify.webhooks[0]",
                "http://",
            ),
            (
                "headers = { \"Bad Name\" = \"x\" }\n",
                "c.toml:8:26",
                "notify.headers.\"Bad Name\"",
                "not a token",
            ),
            (
                "headers = { \"Content-Type\" = \"text/plain\" }\n",
                "c.toml:8:30",
                "notify.headers.Content-Type",
                "set by the webhook sender",
            ),
            (
                "bearer_token = \"t\"\nheaders = { Authorization = \"Basic x\" }\n",
                "c.toml:9:29",
                "notify.headers.Authorization",
                "use one",
            ),
            (
                "bearer_token = \"\"\n",
                "c.toml:8:16",
                "notify.bearer_token",
                "non-empty",
            ),
            (
                "bearer_token = \"a\\nb\"\n",
                "c.toml:8:16",
                "notify.bearer_token",
                "control characters",
            ),
            (
                "webhooks = [\"https://h/\"]\nca_file = \"missing.pem\"\n",
                "c.toml:9:11",
                "notify.ca_file",
                "missing.pem",
            ),
            (
                "webhooks = [\"https://h/\"]\ntls_verify = false\nca_file = \"x.pem\"\n",
                "c.toml:10:11",
                "notify.ca_file",
                "no effect",
            ),
        ] {
            let e = notify(table).unwrap_err();
            assert!(
                e.contains(&format!("{place}: {key}: ")) && e.contains(why),
                "{table}: {e}"
            );
        }
        let e = notify("bearer = \"t\"\n").unwrap_err();
        assert!(e.contains("unknown field"), "{e}");
    }
}
