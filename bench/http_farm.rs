//! `http_farm`: N tiny HTTP/1.1 health endpoints on loopback, the targets of
//! `bench/prober_load.sh`.
//!
//! ```text
//! cargo run --release --example http_farm -- --count 10000 --seconds 600 \
//!     [--net 127.77.0] [--ips 40] [--base-port 20000] [--addrs-out FILE] \
//!     [--delay-ms 0]
//! ```
//!
//! * Listens on `--count` distinct addresses: ports `--base-port`,
//!   `--base-port + 1`, … on each of `<net>.1` … `<net>.<ips>` (default
//!   `127.77.0.1` … `127.77.0.40`, away from anything on `127.0.0.1`; the
//!   addresses fill first, then the next port), so every endpoint is its own
//!   `(address, port)` and a prober opens one distinct connection per
//!   endpoint and round.
//! * Answers `GET /health` (any path starting with `/health`) with
//!   `200 OK`, `Connection: close`, and `404` to anything else, after
//!   `--delay-ms` (default 0: answer at once). Every connection is closed
//!   after one response.
//! * `GET /stats` on any listener answers one line with counters:
//!   `requests R health H hit L of N errors E`, where `L` is how many
//!   distinct listeners got at least one `/health` request.
//! * Writes the listen addresses, one `IP:PORT` a line, to `--addrs-out`
//!   (once all are bound), and prints the same final counter line on exit.
//! * Raises its own `RLIMIT_NOFILE` to fit the listeners plus connections.
//! * Stops by itself after `--seconds` (default 600), or on SIGTERM/SIGINT.
//!
//! Only loopback addresses are used.

use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Most bytes of a request head read before giving up on it.
const HEAD_LIMIT: usize = 8 * 1024;
/// How long a client may take to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Counters shared by every listener.
struct Stats {
    requests: AtomicU64,
    health: AtomicU64,
    errors: AtomicU64,
    /// `/health` requests per listener.
    per_listener: Vec<AtomicU64>,
}

impl Stats {
    fn line(&self) -> String {
        let hit = self
            .per_listener
            .iter()
            .filter(|c| c.load(Ordering::Relaxed) > 0)
            .count();
        format!(
            "requests {} health {} hit {} of {} errors {}",
            self.requests.load(Ordering::Relaxed),
            self.health.load(Ordering::Relaxed),
            hit,
            self.per_listener.len(),
            self.errors.load(Ordering::Relaxed),
        )
    }
}

/// Parsed command line.
struct Opts {
    count: usize,
    net: [u8; 3],
    ips: u8,
    base_port: u16,
    seconds: u64,
    delay: Duration,
    addrs_out: Option<String>,
}

fn parse_args() -> Result<Opts, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut flags = HashMap::new();
    let mut it = args.iter();
    while let Some(k) = it.next() {
        let Some(name) = k.strip_prefix("--") else {
            return Err(format!("unexpected argument {k:?}"));
        };
        let v = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
        flags.insert(name.to_string(), v.clone());
    }
    fn num<T: std::str::FromStr>(
        flags: &HashMap<String, String>,
        k: &str,
        default: T,
    ) -> Result<T, String> {
        flags.get(k).map_or(Ok(default), |v| {
            v.parse().map_err(|_| format!("--{k}: bad number {v:?}"))
        })
    }
    for k in flags.keys() {
        if ![
            "count",
            "net",
            "ips",
            "base-port",
            "seconds",
            "delay-ms",
            "addrs-out",
        ]
        .contains(&k.as_str())
        {
            return Err(format!("unknown flag --{k}"));
        }
    }
    let net = flags.get("net").map_or("127.77.0", String::as_str);
    let octets: Vec<u8> = net
        .split('.')
        .map(|o| o.parse::<u8>().map_err(|_| format!("--net: bad {net:?}")))
        .collect::<Result<_, _>>()?;
    let net: [u8; 3] = octets
        .try_into()
        .map_err(|_| format!("--net: want three octets like 127.77.0, got {net:?}"))?;
    if net[0] != 127 {
        return Err("--net must be inside 127.0.0.0/8 (loopback only)".into());
    }
    let opts = Opts {
        count: num(&flags, "count", 100usize)?,
        net,
        ips: num(&flags, "ips", 40u8)?,
        base_port: num(&flags, "base-port", 20000u16)?,
        seconds: num(&flags, "seconds", 600u64)?,
        delay: Duration::from_millis(num(&flags, "delay-ms", 0u64)?),
        addrs_out: flags.get("addrs-out").cloned(),
    };
    if opts.count == 0 || opts.ips == 0 || opts.ips == 255 {
        return Err("--count must be > 0 and --ips in 1..=254".into());
    }
    let ports = opts.count.div_ceil(usize::from(opts.ips));
    if usize::from(opts.base_port) + ports > 65536 {
        return Err(format!(
            "{} ports from {} do not fit",
            ports, opts.base_port
        ));
    }
    Ok(opts)
}

/// The `i`th listen address: addresses first, then ports.
fn addr_of(i: usize, opts: &Opts) -> SocketAddr {
    let [a, b, c] = opts.net;
    let ip = Ipv4Addr::new(a, b, c, 1 + (i % usize::from(opts.ips)) as u8);
    let port = opts.base_port + (i / usize::from(opts.ips)) as u16;
    SocketAddr::new(IpAddr::V4(ip), port)
}

/// Raise `RLIMIT_NOFILE` (soft, and hard if allowed) to at least `want`.
fn raise_nofile(want: u64) -> Result<u64, String> {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        let mut rl = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) != 0 {
            return Err(format!("getrlimit: {}", std::io::Error::last_os_error()));
        }
        if rl.rlim_cur >= want {
            return Ok(rl.rlim_cur);
        }
        let mut new = libc::rlimit {
            rlim_cur: want,
            rlim_max: rl.rlim_max.max(want),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &new) != 0 {
            // Not allowed to raise the hard limit: take what it allows.
            new.rlim_cur = rl.rlim_max;
            new.rlim_max = rl.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &new) != 0 {
                return Err(format!("setrlimit: {}", std::io::Error::last_os_error()));
            }
        }
        Ok(new.rlim_cur)
    }
}

fn find_head_end(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Serve one connection: one request, one response, close.
async fn serve(mut s: TcpStream, idx: usize, stats: Arc<Stats>, delay: Duration) {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let head = tokio::time::timeout(READ_TIMEOUT, async {
        loop {
            if find_head_end(&buf).is_some() {
                return true;
            }
            if buf.len() >= HEAD_LIMIT {
                return false;
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    if !matches!(head, Ok(true)) {
        stats.errors.fetch_add(1, Ordering::Relaxed);
        return;
    }
    stats.requests.fetch_add(1, Ordering::Relaxed);
    let line = buf.split(|&b| b == b'\r').next().unwrap_or_default();
    let resp = if line.starts_with(b"GET /health") || line.starts_with(b"HEAD /health") {
        stats.health.fetch_add(1, Ordering::Relaxed);
        stats.per_listener[idx].fetch_add(1, Ordering::Relaxed);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n".to_string()
    } else if line.starts_with(b"GET /stats") {
        let body = format!("{}\n", stats.line());
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    } else {
        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
    };
    if s.write_all(resp.as_bytes()).await.is_err() {
        stats.errors.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let _ = s.shutdown().await;
}

async fn accept_loop(l: TcpListener, idx: usize, stats: Arc<Stats>, delay: Duration) {
    loop {
        match l.accept().await {
            Ok((s, _)) => {
                tokio::spawn(serve(s, idx, stats.clone(), delay));
            }
            Err(_) => {
                // EMFILE and friends: count, back off briefly, keep going.
                stats.errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn run(opts: Opts) -> Result<String, String> {
    let stats = Arc::new(Stats {
        requests: AtomicU64::new(0),
        health: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        per_listener: (0..opts.count).map(|_| AtomicU64::new(0)).collect(),
    });
    let mut addrs = Vec::with_capacity(opts.count);
    for i in 0..opts.count {
        let addr = addr_of(i, &opts);
        let l = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("bind {addr}: {e}"))?;
        addrs.push(addr);
        tokio::spawn(accept_loop(l, i, stats.clone(), opts.delay));
    }
    let listing: String = addrs.iter().map(|a| format!("{a}\n")).collect();
    match &opts.addrs_out {
        Some(path) => {
            // Write then rename, so a reader never sees a partial list.
            let tmp = format!("{path}.tmp");
            std::fs::write(&tmp, &listing).map_err(|e| format!("{tmp}: {e}"))?;
            std::fs::rename(&tmp, path).map_err(|e| format!("{path}: {e}"))?;
        }
        None => print!("{listing}"),
    }
    eprintln!(
        "http_farm: {} listeners on {}.{}.{}.1-{} ports {}-{}, for {} s",
        opts.count,
        opts.net[0],
        opts.net[1],
        opts.net[2],
        opts.ips.min(opts.count.min(254) as u8),
        opts.base_port,
        addrs.last().map_or(opts.base_port, SocketAddr::port),
        opts.seconds
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("SIGTERM handler: {e}"))?;
    tokio::select! {
        () = tokio::time::sleep(Duration::from_secs(opts.seconds)) => {}
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(stats.line())
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!(
                "http_farm: {e}\nusage: http_farm [--count N] [--net 127.77.0] [--ips 40] [--base-port 20000] \
                 [--seconds 600] [--delay-ms 0] [--addrs-out FILE]"
            );
            return ExitCode::from(2);
        }
    };
    // Listeners, plus room for as many connections again, plus slack.
    let want = opts.count as u64 * 2 + 1024;
    match raise_nofile(want) {
        Ok(got) if got < opts.count as u64 + 64 => {
            eprintln!(
                "http_farm: RLIMIT_NOFILE is {got}, too low for {} listeners",
                opts.count
            );
            return ExitCode::FAILURE;
        }
        Ok(_) => {}
        Err(e) => eprintln!("http_farm: {e} (continuing)"),
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("http_farm: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(opts)) {
        Ok(line) => {
            println!("{line}");
            let _ = std::io::stdout().flush();
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("http_farm: {e}");
            ExitCode::FAILURE
        }
    }
}
