//! The read-only status page: plain server-rendered HTML, no JavaScript,
//! readable on a phone (tables turn into cards on narrow screens). Every
//! string from the status is escaped.

use std::fmt::Write as _;

use super::model::{EndpointState, EndpointStatus, PoolStatus, Status};

/// Escape `s` for HTML text and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `2026-11-25 11:03:04 UTC` for Unix time `t`.
pub fn fmt_utc(t: u64) -> String {
    let days = t / 86_400;
    let secs = t % 86_400;
    // Civil from days (Howard Hinnant's algorithm), for days since 1970.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// `3m 20s ago`-style age of `t` at `now`.
pub fn fmt_ago(now: u64, t: u64) -> String {
    let Some(d) = now.checked_sub(t) else {
        return "in the future".into();
    };
    match d {
        0..60 => format!("{d}s ago"),
        60..3600 => format!("{}m {}s ago", d / 60, d % 60),
        3600..86_400 => format!("{}h {}m ago", d / 3600, d / 60 % 60),
        _ => format!("{}d {}h ago", d / 86_400, d / 3600 % 24),
    }
}

fn when(now: u64, t: Option<u64>) -> String {
    match t {
        Some(t) => format!(
            "<time datetime=\"{t}\">{} <span class=\"small\">({})</span></time>",
            escape(&fmt_ago(now, t)),
            fmt_utc(t)
        ),
        None => "&ndash;".into(),
    }
}

const STYLE: &str = r#"
:root { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1a1a1a; background: #fafafa; }
body { margin: 0 auto; padding: 0.75rem; max-width: 72rem; line-height: 1.4; }
h1 { font-size: 1.3rem; margin: 0.2rem 0 0.5rem; }
h2 { font-size: 1.1rem; margin: 0; display: flex; gap: 0.5rem; align-items: baseline; flex-wrap: wrap; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 0.1rem 0.8rem; margin: 0 0 1rem; font-size: 0.95rem; }
dl.meta dt { color: #555; } dl.meta dd { margin: 0; overflow-wrap: anywhere; }
section.pool { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 0.6rem; margin: 0 0 0.8rem; }
table { border-collapse: collapse; width: 100%; margin-top: 0.4rem; font-size: 0.95rem; }
th, td { text-align: left; padding: 0.3rem 0.4rem; border-top: 1px solid #eee; vertical-align: top; overflow-wrap: anywhere; }
th { color: #555; font-weight: 600; }
.state { font-weight: 700; padding: 0 0.35rem; border-radius: 3px; white-space: nowrap; }
.up { color: #0b5d1e; background: #d9f2df; }
.down { color: #8a1111; background: #fbdada; }
.unknown { color: #5c4a00; background: #fff1c2; }
.disabled { color: #444; background: #e6e6e6; }
.errors { color: #8a1111; margin: 0.2rem 0 0; padding-left: 1.2rem; }
.small { color: #555; font-size: 0.85rem; }
@media (max-width: 40rem) {
  table, thead, tbody, tr, td { display: block; width: auto; }
  thead { display: none; }
  tr { border-top: 1px solid #ddd; padding: 0.3rem 0; }
  td { border: 0; padding: 0.1rem 0.2rem; }
  td::before { content: attr(data-label) ": "; color: #555; font-weight: 600; }
}
"#;

fn state_badge(state: EndpointState) -> &'static str {
    match state {
        EndpointState::Up => "<span class=\"state up\">UP</span>",
        EndpointState::Down => "<span class=\"state down\">DOWN</span>",
        EndpointState::Unknown => "<span class=\"state unknown\">UNKNOWN</span>",
        EndpointState::Disabled => "<span class=\"state disabled\">DISABLED</span>",
        EndpointState::Drained => "<span class=\"state disabled\">DRAINED</span>",
    }
}

fn endpoint_row(out: &mut String, now: u64, e: &EndpointStatus) {
    let _ = writeln!(
        out,
        "<tr class=\"endpoint {}\" data-endpoint=\"{}\">\
         <td data-label=\"Endpoint\">{}</td>\
         <td data-label=\"Address\">{}</td>\
         <td data-label=\"State\">{}</td>\
         <td data-label=\"Reason\">{}</td>\
         <td data-label=\"Since\">{}</td>\
         <td data-label=\"Last probe\">{}</td>\
         <td data-label=\"Monitor\">{}</td></tr>",
        e.state.as_str(),
        escape(&e.name),
        escape(&e.name),
        escape(&e.address),
        state_badge(e.state),
        e.reason.as_deref().map_or("&ndash;".into(), escape),
        when(now, e.last_change_at),
        when(now, e.last_probe_at),
        e.monitor.as_deref().map_or("none".into(), escape),
    );
}

fn pool_section(out: &mut String, now: u64, p: &PoolStatus) {
    let up = p
        .endpoints
        .iter()
        .filter(|e| e.enabled && e.state == EndpointState::Up)
        .count();
    let enabled = p.endpoints.iter().filter(|e| e.enabled).count();
    let badge = if p.usable {
        "<span class=\"state up\">USABLE</span>"
    } else {
        "<span class=\"state down\">NOT USABLE</span>"
    };
    let _ = write!(
        out,
        "<section class=\"pool\" id=\"pool-{}\">\n<h2>Pool {} {badge} \
         <span class=\"small\">{up}/{enabled} enabled endpoints up, min_healthy {}</span></h2>\n\
         <table><thead><tr><th>Endpoint</th><th>Address</th><th>State</th><th>Reason</th>\
         <th>Since</th><th>Last probe</th><th>Monitor</th></tr></thead>\n<tbody>\n",
        escape(&p.name),
        escape(&p.name),
        p.min_healthy,
    );
    for e in &p.endpoints {
        endpoint_row(out, now, e);
    }
    out.push_str("</tbody></table>\n</section>\n");
}

/// The status page for `status`, with ages relative to `now` (Unix secs).
pub fn render(status: &Status, now: u64) -> String {
    render_page(status, None, now)
}

/// The anycast row: wanted state, BIRD's confirmation, the last self-check.
fn anycast_row(a: &crate::anycast::AnycastStatus, now: u64) -> String {
    let badge = if a.announced {
        "<span class=\"state up\">ANNOUNCED</span>"
    } else {
        "<span class=\"state down\">WITHDRAWN</span>"
    };
    let mut s = format!(
        "{badge} {} ({}, since {})",
        escape(&a.prefixes.join(", ")),
        escape(&a.state),
        when(now, Some(a.since))
    );
    if let Some(r) = &a.reason {
        let _ = write!(s, ": {}", escape(r));
    }
    if let Some(e) = &a.bird_error {
        let _ = write!(s, "<ul class=\"errors\"><li>{}</li></ul>", escape(e));
    }
    let _ = write!(
        s,
        "<br><span class=\"small\">self-checks {} ok, {} failed",
        a.self_checks_ok, a.self_checks_failed
    );
    if let Some(c) = &a.last_self_check {
        let _ = write!(
            s,
            "; last {} {}",
            if c.ok { "ok" } else { "FAILED" },
            when(now, Some(c.at))
        );
        if let Some(e) = &c.error {
            let _ = write!(s, ": {}", escape(e));
        }
    }
    s.push_str("</span>");
    s
}

/// The status page, with the anycast row when `anycast` is given.
pub fn render_page(
    status: &Status,
    anycast: Option<&crate::anycast::AnycastStatus>,
    now: u64,
) -> String {
    let mut out = String::with_capacity(4096 + status.pools.len() * 2048);
    let title = format!("steerdns status: {}", escape(&status.node_name));
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta http-equiv=\"refresh\" content=\"10\">\n<title>{title}</title>\n\
         <style>{STYLE}</style>\n</head>\n<body>\n<h1>{title}</h1>\n<dl class=\"meta\">\n"
    );
    let mut meta = |k: &str, v: String| {
        let _ = writeln!(out, "<dt>{k}</dt><dd>{v}</dd>");
    };
    meta("Version", escape(&status.version));
    meta("Config generation", status.generation.to_string());
    meta("Config file", escape(&status.config_file));
    meta("Started", when(now, Some(status.started_at)));
    let reload = match &status.last_reload {
        None => "none since start".to_string(),
        Some(r) => {
            let mut s = format!(
                "{} {}, generation {}",
                if r.ok {
                    "<span class=\"state up\">OK</span>"
                } else {
                    "<span class=\"state down\">FAILED</span>"
                },
                when(now, Some(r.at)),
                r.generation
            );
            if !r.errors.is_empty() {
                s.push_str("<ul class=\"errors\">");
                for e in &r.errors {
                    let _ = write!(s, "<li>{}</li>", escape(e));
                }
                s.push_str("</ul>");
            }
            s
        }
    };
    meta("Last reload", reload);
    if let Some(a) = anycast {
        meta("Anycast", anycast_row(a, now));
    }
    let usable = status.pools.iter().filter(|p| p.usable).count();
    meta(
        "Pools usable",
        format!("{usable} of {}", status.pools.len()),
    );
    let _ = writeln!(
        out,
        "<dt>Page rendered</dt><dd>{}</dd>\n</dl>",
        fmt_utc(now)
    );
    if status.pools.is_empty() {
        out.push_str("<p>No pools configured.</p>\n");
    }
    for p in &status.pools {
        pool_section(&mut out, now, p);
    }
    out.push_str(
        "<p class=\"small\">Read-only. JSON: <a href=\"/api/v1/status\">/api/v1/status</a>, \
         metrics: <a href=\"/metrics\">/metrics</a>.</p>\n</body>\n</html>\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything() {
        assert_eq!(
            escape("<script>alert('x') & \"y\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
    }

    #[test]
    fn formats_times() {
        assert_eq!(fmt_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(fmt_utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(fmt_utc(1_795_000_000), "2026-11-18 11:06:40 UTC");
        assert_eq!(fmt_ago(100, 100), "0s ago");
        assert_eq!(fmt_ago(200, 100), "1m 40s ago");
        assert_eq!(fmt_ago(100_000, 0), "1d 3h ago");
        assert_eq!(fmt_ago(0, 5), "in the future");
    }

    #[test]
    fn hostile_strings_are_escaped() {
        let evil = "<img src=x onerror=alert(1)>";
        let s = Status {
            node_name: evil.into(),
            config_file: evil.into(),
            pools: vec![PoolStatus {
                name: evil.into(),
                endpoints: vec![EndpointStatus {
                    name: evil.into(),
                    address: evil.into(),
                    reason: Some(evil.into()),
                    monitor: Some(evil.into()),
                    state: EndpointState::Down,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            last_reload: Some(super::super::model::LastReload {
                errors: vec![evil.into()],
                ..Default::default()
            }),
            ..Default::default()
        };
        let html = render(&s, 0);
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
    }
}
