//! The check's exchange against scripted peers on an in-memory pipe: the
//! request on the wire, status lines, heads, bodies and the reason strings
//! of every protocol failure.

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::super::client;
use super::*;
use crate::probe::check::PhaseName;

/// A GET request for `path` at `authority` (also used by redirect's tests).
pub(super) fn req<'a>(path: &'a str, authority: &'a str, https: bool) -> Request<'a> {
    Request {
        method: "GET",
        path,
        authority,
        https,
        default_port: if https { 443 } else { 80 },
    }
}

/// Run one exchange against a peer that answers `response` (then
/// closes) on an in-memory pipe; also returns what the client sent.
async fn against(h: &HttpCheck, response: &'static [u8]) -> (Result<Outcome, Fail>, String) {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let peer = tokio::spawn(serve_once(server, response));
    let r = req(&h.path, "example.test", false);
    let phase = Phase::default();
    let out = exchange(client, h, &r, &phase).await;
    (out, peer.await.unwrap())
}

async fn serve_once(mut s: DuplexStream, response: &'static [u8]) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let _ = s.write_all(response).await;
    let _ = s.shutdown().await;
    String::from_utf8_lossy(&got).into_owned()
}

fn done(r: Result<Outcome, Fail>) -> String {
    match r {
        Ok(Outcome::Done(d)) => d,
        Ok(Outcome::Redirect { status, path }) => panic!("redirect {status} to {path}"),
        Err(f) => panic!("failed: {:?} {}", f.kind, f.detail),
    }
}

fn failed(r: Result<Outcome, Fail>) -> Fail {
    match r {
        Ok(_) => panic!("passed unexpectedly"),
        Err(f) => f,
    }
}

#[tokio::test]
async fn the_request_on_the_wire() {
    let h = HttpCheck {
        // Configured names go out title-case, whatever their spelling.
        headers: vec![
            ("X-Probe".into(), "yes".into()),
            ("x-api-KEY".into(), "k".into()),
        ],
        ..HttpCheck::default()
    };
    let (out, sent) = against(&h, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await;
    assert_eq!(done(out), "status 200");
    let ua = crate::probe::check::default_user_agent();
    assert_eq!(
        sent,
        format!(
            "GET / HTTP/1.1\r\nHost: example.test\r\nUser-Agent: {ua}\r\nAccept: */*\r\n\
             Accept-Encoding: identity\r\nConnection: close\r\nX-Probe: yes\r\nX-Api-Key: k\r\n\r\n"
        )
    );
}

#[tokio::test]
async fn status_lines() {
    for (resp, status) in [
        (&b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"[..], "status 200"),
        (b"HTTP/1.0 204\r\n\r\n", "status 204"),
        (b"HTTP/1.1 204 No Content here\r\n\r\n", "status 204"),
        // Informational responses before the final one are skipped.
        (
            b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            "status 200",
        ),
    ] {
        let (out, _) = against(&HttpCheck::default(), resp).await;
        assert_eq!(done(out), status, "{:?}", String::from_utf8_lossy(resp));
    }
    for bad in [
        &b"HTTP/2 200 OK\r\n\r\n"[..],
        b"HTTP/1.1 20 OK\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"http/1.1 200 OK\r\n\r\n",
        b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
        b"HTTP/1.1 099 x\r\n\r\n",
        b"HTTP/1.1 600 x\r\n\r\n",
    ] {
        let (out, _) = against(&HttpCheck::default(), bad).await;
        let e = failed(out);
        assert_eq!(e.kind, ProbeErrorKind::Protocol);
        let line = String::from_utf8_lossy(bad.split(|&b| b == b'\r').next().unwrap());
        assert_eq!(
            e.detail,
            format!("protocol: malformed status line {line:?}"),
            "{line}"
        );
    }
    let (out, _) = against(&HttpCheck::default(), b"").await;
    assert_eq!(
        failed(out).detail,
        "protocol: connection closed before status line"
    );
    let (out, _) = against(&HttpCheck::default(), b"HTTP/1.1 200 OK\r\nX: y\r\n").await;
    assert_eq!(
        failed(out).detail,
        "protocol: connection closed in response head after 23 bytes"
    );
    let (out, _) = against(
        &HttpCheck::default(),
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n",
    )
    .await;
    assert_eq!(
        failed(out).detail,
        "protocol: unexpected 101 switching protocols"
    );
}

#[tokio::test]
async fn heads() {
    // The last transfer coding decides; chunked wins over a length.
    let h = HttpCheck {
        expect_body: Some("hello".into()),
        ..HttpCheck::default()
    };
    let (out, _) = against(
        &h,
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(done(out), "status 200");
    // Bare LF line ends.
    let (out, _) = against(&h, b"HTTP/1.1 200 OK\nContent-Length: 5\n\nhello").await;
    assert_eq!(done(out), "status 200");
    for (bad, why) in [
        (
            &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello"[..],
            "protocol: conflicting content-length headers",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "protocol: bad content-length \"-1\"",
        ),
        (
            b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
            "protocol: obsolete header line folding",
        ),
        (
            b"HTTP/1.1 200 OK\r\nBad Name: a\r\n\r\n",
            "protocol: malformed header name \"Bad Name\"",
        ),
        (
            b"HTTP/1.1 200 OK\r\nServer: x\r\nno colon at all\r\n\r\n",
            "protocol: malformed header line \"no colon at all\"",
        ),
        (
            b"HTTP/1.1 200 OK\r\nX: a\x01b\r\n\r\n",
            "protocol: malformed header value \"a\\u{1}b\"",
        ),
        (
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n:empty\r\n\r\n",
            "protocol: malformed header name \"\"",
        ),
        (
            b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "protocol: transfer-encoding in an HTTP/1.0 response",
        ),
    ] {
        let (out, _) = against(&HttpCheck::default(), bad).await;
        let e = failed(out);
        assert_eq!(e.kind, ProbeErrorKind::Protocol, "{}", e.detail);
        assert_eq!(e.detail, why);
    }
    // Many small header lines within the size limit.
    let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
    for _ in 0..=client::MAX_HEADERS {
        many.extend_from_slice(b"X: y\r\n");
    }
    many.extend_from_slice(b"\r\n");
    let (out, _) = against(&HttpCheck::default(), many.leak()).await;
    assert_eq!(
        failed(out).detail,
        format!(
            "protocol: more than {} response header lines",
            client::MAX_HEADERS
        )
    );
}

#[tokio::test]
async fn chunked_body_with_marker_across_chunks() {
    let h = HttpCheck {
        expect_body: Some("marker".into()),
        ..HttpCheck::default()
    };
    let (out, _) = against(
        &h,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext\r\nhello\r\n4\r\n mar\r\n3\r\nker\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(done(out), "status 200");
    // Trailers are not checked (nor were they before hyper).
    let (out, _) = against(
        &HttpCheck::default(),
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nmarker\r\n0\r\nBad Trailer\r\n\r\n",
    )
    .await;
    assert_eq!(done(out), "status 200");
    for (bad, why) in [
        (
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"[..],
            "protocol: malformed chunk size",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXY0\r\n\r\n",
            "protocol: malformed chunked body (missing CRLF after chunk)",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nhello",
            "protocol: connection closed in chunked body",
        ),
        // The last chunk without the blank line after it: hyper waits for
        // it (the client before hyper stopped at the last chunk and passed).
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n",
            "protocol: connection closed in chunked body",
        ),
    ] {
        let (out, _) = against(&h, bad).await;
        let e = failed(out);
        assert_eq!(e.kind, ProbeErrorKind::Protocol);
        assert_eq!(e.detail, why);
    }
}

#[tokio::test]
async fn truncated_length_body_is_a_protocol_error() {
    let (out, _) = against(
        &HttpCheck::default(),
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort",
    )
    .await;
    let e = failed(out);
    assert_eq!(e.kind, ProbeErrorKind::Protocol);
    assert_eq!(e.detail, "protocol: body truncated (95 bytes missing)");
}

#[tokio::test]
async fn endless_body_is_bounded_by_the_limit() {
    // A peer that never stops sending: the client keeps at most `limit`
    // bytes and returns as soon as it has them.
    let (client, mut server) = tokio::io::duplex(64 * 1024);
    let writer = tokio::spawn(async move {
        let mut head = [0u8; 1024];
        let _ = server.read(&mut head).await;
        let _ = server.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
        let chunk = vec![b'a'; 4096];
        let mut sent = 0usize;
        while server.write_all(&chunk).await.is_ok() {
            sent += chunk.len();
        }
        sent
    });
    let limit = 100_000;
    let h = HttpCheck {
        expect_body: Some("never".into()),
        body_limit: limit,
        ..HttpCheck::default()
    };
    let phase = Phase::default();
    let e = failed(exchange(client, &h, &req("/", "example.test", false), &phase).await);
    assert_eq!(
        e.detail,
        format!("body: \"never\" not found in {limit} bytes")
    );
    let sent = writer.await.unwrap();
    // The writer stopped because the client went away, not because it
    // ran out: it got at most the limit plus what hyper and the pipe
    // buffer.
    assert!(
        sent <= limit + client::HEAD_LIMIT + 64 * 1024 + 4096,
        "sent {sent}"
    );
}

#[tokio::test(start_paused = true)]
async fn phases_name_where_a_timeout_hit() {
    // A peer that reads the request and never answers: once everything
    // is idle (paused time advances only then), the client is waiting
    // in "response head", not "request".
    let (client, mut server) = tokio::io::duplex(4096);
    tokio::spawn(async move {
        let mut buf = [0u8; 1024];
        while matches!(server.read(&mut buf).await, Ok(n) if n > 0) {}
    });
    let phase = Phase::default();
    let h = HttpCheck::default();
    let r = req("/", "example.test", false);
    let run = exchange(client, &h, &r, &phase);
    let timed_out = tokio::time::timeout(std::time::Duration::from_secs(1), run).await;
    assert!(timed_out.is_err());
    assert!(phase.is(PhaseName::ResponseHead), "{}", phase.name());
}
