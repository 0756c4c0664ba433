//! `[notify]` → webhook settings.

use super::NotifySettings;
use crate::config::Diagnostics;
use crate::config::raw::ConfigFile;
use crate::probe::notify::parse_http_url;

/// Compile `[notify]`.
pub(super) fn compile_notify(file: &ConfigFile, d: &mut Diagnostics<'_>) -> NotifySettings {
    let n = &file.notify;
    let mut urls = Vec::new();
    for (i, u) in n.webhooks.iter().enumerate() {
        match parse_http_url(u.get_ref()) {
            Ok(_) => urls.push(u.get_ref().clone()),
            Err(e) => d.error(u.span(), format!("notify.webhooks[{i}]"), e),
        }
    }
    NotifySettings {
        urls,
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
        assert_eq!(n.urls, ["http://127.0.0.1:9/hook"]);
        assert_eq!((n.queue_size, n.attempts), (1000, 3));
        let (n, _) = run("[notify]\nqueue_size = 0\nretries = 0\n", |_, f, d| {
            compile_notify(f, d)
        });
        assert_eq!((n.queue_size, n.attempts), (1, 1), "at least one");
    }
}
