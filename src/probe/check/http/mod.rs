//! HTTP and HTTPS checks: the probe loop (redirects included) and what the
//! response must look like. The request is in [`request`], where redirects
//! lead in [`redirect`]; the wire work is done by the shared hyper-based
//! client ([`super::client`]): one request per fresh connection,
//! `Connection: close`, bounded reads.

mod redirect;
mod request;
#[cfg(test)]
mod tests;

use std::borrow::Cow;

use hyper::header::LOCATION;
use tokio::io::{AsyncRead, AsyncWrite};

use self::redirect::resolve_redirect;
pub(super) use self::request::validate;
use self::request::{build_request, host_header};
use super::client::{Exchange, Seen, protocol};
use super::{Fail, HttpCheck, Phase, ProbeErrorKind, Target, TlsCheck, tcp, tls};

/// Most redirects followed.
pub(super) const MAX_REDIRECTS: usize = 5;

/// Run an HTTP(S) check.
pub(super) async fn probe(
    h: &HttpCheck,
    tls: Option<&TlsCheck>,
    target: Target<'_>,
    phase: &Phase,
) -> Result<String, Fail> {
    validate(h).map_err(|e| {
        Fail::new(
            ProbeErrorKind::Protocol,
            format!("protocol: invalid request: {e}"),
        )
    })?;
    let https = tls.is_some();
    let default_port = if https { 443 } else { 80 };
    let authority = host_header(h, tls, target, default_port);
    // Borrowed until a redirect changes them: no copies per probe.
    let mut method = Cow::Borrowed(h.method.as_str());
    let mut path = Cow::Borrowed(h.path.as_str());
    let mut hops = 0;
    loop {
        let req = Request {
            method: &method,
            path: &path,
            authority: &authority,
            https,
            default_port,
        };
        let outcome = match tls {
            None => {
                let stream = tcp::connect(target.addr, phase).await?;
                exchange(stream, h, &req, phase).await?
            }
            Some(t) => {
                let tcp = tcp::connect(target.addr, phase).await?;
                let stream = tls::handshake(t, target, tcp, phase).await?;
                exchange(stream, h, &req, phase).await?
            }
        };
        match outcome {
            Outcome::Redirect { status, path: next } => {
                if hops == MAX_REDIRECTS {
                    return Err(Fail::new(
                        ProbeErrorKind::Protocol,
                        format!(
                            "protocol: too many redirects (status {status} after {MAX_REDIRECTS})"
                        ),
                    ));
                }
                hops += 1;
                if status == 303 && !method.eq_ignore_ascii_case("HEAD")
                    || matches!(status, 301 | 302) && method.eq_ignore_ascii_case("POST")
                {
                    method = Cow::Borrowed("GET");
                }
                path = Cow::Owned(next);
            }
            Outcome::Done(detail) => {
                return Ok(match hops {
                    0 => detail,
                    1 => format!("{detail} (after 1 redirect)"),
                    n => format!("{detail} (after {n} redirects)"),
                });
            }
        }
    }
}

/// One request on a fresh connection.
struct Request<'a> {
    method: &'a str,
    path: &'a str,
    authority: &'a str,
    https: bool,
    default_port: u16,
}

enum Outcome {
    /// Follow a redirect to this path on the same host.
    Redirect { status: u16, path: String },
    /// A final, acceptable response.
    Done(String),
}

/// Send the request and read the response on `stream`.
async fn exchange<S>(
    stream: S,
    h: &HttpCheck,
    req: &Request<'_>,
    phase: &Phase,
) -> Result<Outcome, Fail>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let request = build_request(h, req)?;
    let seen = Seen::default();
    let (mut ex, resp) = Exchange::start(stream, request, phase, &seen).await?;
    let status = resp.status().as_u16();
    if status == 101 {
        return Err(protocol("unexpected 101 switching protocols"));
    }
    if status > 599 {
        return Err(protocol(format!(
            "malformed status line {}",
            ex.first_line()
        )));
    }

    let mut redirect_note = String::new();
    if h.follow_redirects
        && matches!(status, 301 | 302 | 303 | 307 | 308)
        && let Some(loc) = resp.headers().get(LOCATION)
    {
        match resolve_redirect(&String::from_utf8_lossy(loc.as_bytes()), req) {
            Ok(path) => return Ok(Outcome::Redirect { status, path }),
            Err(why) => redirect_note = format!(" (redirect {why} not followed)"),
        }
    }
    if !h.expect_status.contains(status) {
        return Err(Fail::new(
            ProbeErrorKind::Status,
            format!("status {status}{redirect_note}"),
        ));
    }

    // hyper knows HEAD, 204 and 304 have no body.
    let marker = h.expect_body.as_deref().map(str::as_bytes);
    let body = ex.read_body(resp, h.body_limit, marker, phase).await?;
    if let Some(m) = &h.expect_body
        && !body.found
    {
        return Err(Fail::new(
            ProbeErrorKind::Body,
            format!("body: {m:?} not found in {} bytes", body.len),
        ));
    }
    // By hand: `format!` was a tenth of the instructions this module adds.
    let mut detail = String::with_capacity(10);
    detail.push_str("status ");
    request::push_decimal(&mut detail, status);
    Ok(Outcome::Done(detail))
}
