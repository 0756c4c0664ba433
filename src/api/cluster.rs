//! Cluster routes of the HTTP API, served when the application hands the
//! server a [`Cluster`]:
//!
//! | route | what |
//! |---|---|
//! | `GET /api/v1/cluster/verdicts[?layout=HEX]` | this node's verdicts, binary ([`crate::cluster::wire`]); bearer `cluster.token` |
//! | `POST /api/v1/cluster/poke` | pull the peers now (sent by a peer whose admin state changed); bearer `cluster.token` |
//! | `GET /api/v1/cluster` | peers and their freshness, admin states, combined states (JSON) |
//! | `POST /api/v1/endpoints/{pool}/{endpoint}/state` | body `{"state":"drain"}` (or `?state=`): `drain`, `force-up`, `force-down`, `auto`; bearer `server.api_token` (required) |
//! | `GET /api/v1/names` | what every balanced name answers now, per region and mode (JSON) |
//! | `GET /` | the status page, with the names and cluster sections added |

use std::fmt::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode};
use serde_json::{Value, json};

use super::html::{escape, fmt_ago};
use super::{
    MAX_BODY_BYTES, Resp, authorized, cross_origin, json, json_error, query_param, respond,
    url_decode,
};
use crate::cluster::Cluster;
use crate::select::{self, Inputs, Mode, Policy, PoolId};
use crate::snapshot::Snapshot;

fn unauthorized() -> Resp {
    let mut r = json_error(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"steerdns\""),
    );
    r
}

/// Serve `req` if it is a cluster route; otherwise hand it back.
pub(super) async fn route(
    req: Request<Incoming>,
    cluster: &Arc<Cluster>,
    api_token: Option<&str>,
    status_html: impl FnOnce() -> String,
) -> Result<Resp, Request<Incoming>> {
    let path = req.uri().path().to_string();
    let get = matches!(*req.method(), Method::GET | Method::HEAD);
    if path == crate::cluster::peer::VERDICTS_PATH && get {
        let token = cluster.token();
        if !authorized(&req, token.as_deref()) {
            return Ok(unauthorized());
        }
        let layout = match query_param(req.uri().query(), "layout") {
            Some(Ok(h)) => u64::from_str_radix(&h, 16).ok(),
            _ => None,
        };
        let c = cluster.clone();
        let body = tokio::task::spawn_blocking(move || c.publish(layout))
            .await
            .unwrap_or_default();
        return Ok(respond(StatusCode::OK, "application/octet-stream", body));
    }
    if path == crate::cluster::peer::POKE_PATH && req.method() == Method::POST {
        if !authorized(&req, cluster.token().as_deref()) {
            return Ok(unauthorized());
        }
        cluster.wake();
        return Ok(json(StatusCode::OK, &json!({"ok": true})));
    }
    if path == "/api/v1/cluster" && get {
        return Ok(json(StatusCode::OK, &cluster.status_json()));
    }
    if path == "/api/v1/names" && get {
        let snap = cluster.snapshot();
        return Ok(json(StatusCode::OK, &names_json(&snap)));
    }
    if path == "/" && get {
        let page = status_html();
        let snap = cluster.snapshot();
        let mut extra = names_html(&snap);
        extra.push_str(&cluster_html(&cluster.status_json()));
        let page = match page.find("</dl>\n") {
            Some(i) => format!("{}{extra}{}", &page[..i + 6], &page[i + 6..]),
            None => page + &extra,
        };
        let mut r = respond(StatusCode::OK, "text/html; charset=utf-8", page);
        r.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
        );
        return Ok(r);
    }
    if let Some(rest) = path.strip_prefix("/api/v1/endpoints/")
        && let Some(target) = rest.strip_suffix("/state")
    {
        if req.method() != Method::POST {
            let mut r = json_error(StatusCode::METHOD_NOT_ALLOWED, "use POST");
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            return Ok(r);
        }
        return Ok(set_state(req, cluster, api_token, target).await);
    }
    Err(req)
}

async fn set_state(
    req: Request<Incoming>,
    cluster: &Arc<Cluster>,
    api_token: Option<&str>,
    target: &str,
) -> Resp {
    let Some(token) = api_token else {
        return json_error(
            StatusCode::FORBIDDEN,
            "changing endpoint states needs server.api_token to be set",
        );
    };
    if !authorized(&req, Some(token)) {
        return unauthorized();
    }
    if cross_origin(&req) {
        return json_error(StatusCode::FORBIDDEN, "cross-origin request refused");
    }
    let Some((pool, endpoint)) = target.split_once('/') else {
        return json_error(
            StatusCode::NOT_FOUND,
            "use /api/v1/endpoints/{pool}/{endpoint}/state",
        );
    };
    let (Some(pool), Some(endpoint)) = (url_decode(pool), url_decode(endpoint)) else {
        return json_error(StatusCode::BAD_REQUEST, "bad encoding of pool or endpoint");
    };
    let from_query = match query_param(req.uri().query(), "state") {
        Some(Ok(s)) => Some(s),
        Some(Err(())) => return json_error(StatusCode::BAD_REQUEST, "bad encoding of state"),
        None => None,
    };
    let state = match from_query {
        Some(s) => s,
        None => {
            let body = match Limited::new(req.into_body(), MAX_BODY_BYTES as usize)
                .collect()
                .await
            {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return json_error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
                }
            };
            match parse_state_body(&body) {
                Ok(s) => s,
                Err(e) => return json_error(StatusCode::BAD_REQUEST, &e),
            }
        }
    };
    let c = cluster.clone();
    let r = tokio::task::spawn_blocking(move || c.set_admin(&pool, &endpoint, &state)).await;
    match r {
        Ok(Ok(v)) => {
            let c = cluster.clone();
            tokio::spawn(async move { c.poke_peers().await });
            json(StatusCode::OK, &v)
        }
        Ok(Err(e @ crate::cluster::AdminError::Unknown(..))) => {
            json_error(StatusCode::NOT_FOUND, &e.to_string())
        }
        Ok(Err(e @ crate::cluster::AdminError::State(_))) => {
            json_error(StatusCode::BAD_REQUEST, &e.to_string())
        }
        Ok(Err(e)) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        Err(_) => json_error(StatusCode::INTERNAL_SERVER_ERROR, "state change failed"),
    }
}

fn parse_state_body(body: &Bytes) -> Result<String, String> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| format!("body must be JSON like {{\"state\":\"drain\"}}: {e}"))?;
    v.get("state")
        .and_then(Value::as_str)
        .map(String::from)
        .ok_or_else(|| "body must be JSON like {\"state\":\"drain\"}".into())
}

/// One row of a balanced name's view: who gets which list, and what they
/// are answered now.
struct Row {
    who: String,
    list: Vec<PoolId>,
    pool: Option<PoolId>,
    mode: &'static str,
    problem: bool,
}

fn mode_text(d: &select::Decision<'_>) -> (&'static str, bool) {
    match d.mode {
        Mode::Normal if d.pool.is_some() && d.list.first() != d.pool.as_ref() => {
            ("failover to next pool", true)
        }
        Mode::Normal => ("normal", false),
        Mode::Fallback => ("fallback", true),
        Mode::FailOpen => ("fail-open", true),
        Mode::Nodata => ("nodata", true),
    }
}

fn rows(snap: &Snapshot, b: &select::Balancer) -> Vec<Row> {
    let inp = Inputs {
        pools: &snap.pools,
        health: &snap.health,
    };
    let mut groups: Vec<(String, &[PoolId])> = Vec::new();
    match &b.policy {
        Policy::Geo(m) => {
            let mut who: Vec<Vec<String>> = vec![Vec::new(); m.lists.len()];
            let mut push = |i: u32, w: String| {
                if let Some(v) = who.get_mut(i as usize) {
                    v.push(w);
                }
            };
            push(m.default, "default".into());
            let mut c: Vec<_> = m
                .continent
                .iter()
                .map(|(k, &i)| (format!("{k:?}"), i))
                .collect();
            c.extend(m.country.iter().map(|(k, &i)| (k.as_str().to_string(), i)));
            c.extend(
                m.subdivision
                    .iter()
                    .map(|(k, &i)| (format!("{}-{}", k.country.as_str(), k.code_str()), i)),
            );
            c.extend(m.asn.iter().map(|(k, &i)| (format!("AS{k}"), i)));
            c.sort();
            for (w, i) in c {
                push(i, w);
            }
            for (i, l) in m.lists.iter().enumerate() {
                let w = if who[i].is_empty() {
                    "cidr rules".to_string()
                } else {
                    who[i].join(", ")
                };
                groups.push((w, l));
            }
        }
        Policy::Failover(l) => groups.push(("all clients".into(), l)),
        Policy::Weighted(l) => groups.push(("all clients (weighted)".into(), l)),
        Policy::Proximity(l) => {
            groups.push(("unlocated clients (others: nearest usable)".into(), l))
        }
        Policy::Latency(l) => groups.push(("all clients (lowest RTT first)".into(), l.current())),
    }
    groups
        .into_iter()
        .map(|(who, list)| {
            let d = select::decide_list(b, &inp, list);
            let (mode, problem) = mode_text(&d);
            Row {
                who,
                list: list.to_vec(),
                pool: d.pool,
                mode,
                problem,
            }
        })
        .collect()
}

fn pool_name(snap: &Snapshot, p: PoolId) -> &str {
    snap.pools.get(p as usize).map_or("?", |p| p.name.as_str())
}

/// Every balanced name with its rows, names with a problem first.
fn names_json(snap: &Snapshot) -> Value {
    let mut out: Vec<(bool, Value)> = snap
        .balancers
        .iter()
        .map(|b| {
            let mut rs = rows(snap, b);
            rs.sort_by_key(|r| !r.problem);
            let problem = rs.iter().any(|r| r.problem);
            let rows: Vec<Value> = rs
                .iter()
                .map(|r| {
                    json!({
                        "clients": r.who,
                        "pools": r.list.iter().map(|&p| pool_name(snap, p)).collect::<Vec<_>>(),
                        "answering": r.pool.map(|p| pool_name(snap, p)),
                        "mode": r.mode,
                    })
                })
                .collect();
            (
                problem,
                json!({"name": b.name, "problem": problem, "rows": rows}),
            )
        })
        .collect();
    out.sort_by_key(|(p, _)| !*p);
    Value::Array(out.into_iter().map(|(_, v)| v).collect())
}

fn names_html(snap: &Snapshot) -> String {
    let mut out = String::new();
    let Value::Array(names) = names_json(snap) else {
        return out;
    };
    for n in names {
        let name = n["name"].as_str().unwrap_or("");
        let badge = if n["problem"].as_bool() == Some(true) {
            "<span class=\"state down\">DEGRADED</span>"
        } else {
            "<span class=\"state up\">NORMAL</span>"
        };
        let _ = write!(
            out,
            "<section class=\"pool name\" id=\"name-{}\">\n<h2>Name {} {badge}</h2>\n\
             <table><thead><tr><th>Clients</th><th>Pools</th><th>Answering</th><th>Mode</th></tr></thead>\n<tbody>\n",
            escape(name),
            escape(name)
        );
        for r in n["rows"].as_array().into_iter().flatten() {
            let pools: Vec<&str> = r["pools"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let mode = r["mode"].as_str().unwrap_or("");
            let class = if mode == "normal" { "up" } else { "down" };
            let _ = writeln!(
                out,
                "<tr><td data-label=\"Clients\">{}</td><td data-label=\"Pools\">{}</td>\
                 <td data-label=\"Answering\">{}</td><td data-label=\"Mode\"><span class=\"state {class}\">{}</span></td></tr>",
                escape(r["clients"].as_str().unwrap_or("")),
                escape(&pools.join(" → ")),
                escape(r["answering"].as_str().unwrap_or("all pools")),
                escape(mode),
            );
        }
        out.push_str("</tbody></table>\n</section>\n");
    }
    out
}

fn cluster_html(c: &Value) -> String {
    let mut out = String::new();
    let now = c["now"].as_u64().unwrap_or(0);
    let peers = c["peers"].as_array().cloned().unwrap_or_default();
    let isolated = c["isolated"].as_bool() == Some(true);
    let badge = if isolated {
        "<span class=\"state down\">ISOLATED: own verdicts only</span>"
    } else if peers.is_empty() {
        "<span class=\"state disabled\">SINGLE NODE</span>"
    } else {
        "<span class=\"state up\">CONNECTED</span>"
    };
    let _ = write!(
        out,
        "<section class=\"pool cluster\" id=\"cluster\">\n<h2>Cluster node {} {badge}</h2>\n",
        escape(c["node"].as_str().unwrap_or(""))
    );
    let mut problems: Vec<String> = Vec::new();
    for e in c["endpoints"].as_array().into_iter().flatten() {
        if e["up"].as_bool() == Some(false) || e["drained"].as_bool() == Some(true) {
            problems.push(format!(
                "{}/{}: {}{} ({} of {} verdicts down, {})",
                e["pool"].as_str().unwrap_or(""),
                e["endpoint"].as_str().unwrap_or(""),
                if e["drained"].as_bool() == Some(true) {
                    "DRAINED, "
                } else {
                    ""
                },
                if e["up"].as_bool() == Some(true) {
                    "up"
                } else {
                    "down"
                },
                e["down_votes"],
                e["voters"],
                e["basis"].as_str().unwrap_or(""),
            ));
        }
    }
    if !problems.is_empty() {
        out.push_str("<ul class=\"errors\">");
        for p in &problems {
            let _ = write!(out, "<li>{}</li>", escape(p));
        }
        out.push_str("</ul>\n");
    }
    if !peers.is_empty() {
        out.push_str(
            "<table><thead><tr><th>Peer</th><th>URL</th><th>State</th><th>Last good pull</th>\
             <th>Endpoints</th><th>Bytes</th><th>Last error</th></tr></thead>\n<tbody>\n",
        );
        let mut sorted = peers.clone();
        sorted.sort_by_key(|p| p["fresh"].as_bool() == Some(true));
        for p in sorted {
            let fresh = p["fresh"].as_bool() == Some(true);
            let _ = writeln!(
                out,
                "<tr class=\"peer {}\"><td data-label=\"Peer\">{}</td><td data-label=\"URL\">{}</td>\
                 <td data-label=\"State\">{}</td><td data-label=\"Last good pull\">{}</td>\
                 <td data-label=\"Endpoints\">{}</td><td data-label=\"Bytes\">{}</td><td data-label=\"Last error\">{}</td></tr>",
                if fresh { "fresh" } else { "stale" },
                escape(p["name"].as_str().unwrap_or("")),
                escape(p["url"].as_str().unwrap_or("")),
                if fresh {
                    "<span class=\"state up\">FRESH</span>"
                } else {
                    "<span class=\"state down\">STALE</span>"
                },
                p["last_ok_at"]
                    .as_u64()
                    .map_or("never".into(), |t| escape(&fmt_ago(now, t))),
                p["endpoints"],
                p["bytes"],
                escape(p["last_error"].as_str().unwrap_or("–")),
            );
        }
        out.push_str("</tbody></table>\n");
    }
    let admin = c["admin"].as_array().cloned().unwrap_or_default();
    if !admin.is_empty() {
        out.push_str("<table><thead><tr><th>Endpoint</th><th>Admin state</th><th>Set</th><th>On node</th></tr></thead>\n<tbody>\n");
        for a in admin {
            let _ = writeln!(
                out,
                "<tr class=\"admin\"><td data-label=\"Endpoint\">{}/{}</td><td data-label=\"Admin state\"><span class=\"state unknown\">{}</span></td>\
                 <td data-label=\"Set\">{}</td><td data-label=\"On node\">{}</td></tr>",
                escape(a["pool"].as_str().unwrap_or("")),
                escape(a["endpoint"].as_str().unwrap_or("")),
                escape(&a["state"].as_str().unwrap_or("").to_uppercase()),
                escape(&fmt_ago(now, a["at"].as_u64().unwrap_or(0))),
                escape(a["origin"].as_str().unwrap_or("")),
            );
        }
        out.push_str("</tbody></table>\n");
    }
    out.push_str("<p class=\"small\">JSON: <a href=\"/api/v1/cluster\">/api/v1/cluster</a>, <a href=\"/api/v1/names\">/api/v1/names</a>.</p>\n</section>\n");
    out
}
