//! Command line: `serve`, `check`, `explain`, `ctl`, `geoip-build`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// steerdns: authoritative GeoDNS server and global load balancer.
#[derive(Debug, Parser)]
#[command(name = "steerdns", version, about)]
pub struct Cli {
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the DNS server.
    Serve {
        /// Config file.
        #[arg(long)]
        config: PathBuf,
        /// DNS listen address (UDP and TCP); repeatable; replaces the config's list.
        #[arg(long = "dns-listen", value_name = "ADDR")]
        dns_listen: Vec<SocketAddr>,
        /// HTTP API listen address.
        #[arg(long = "http-listen", value_name = "ADDR")]
        http_listen: Option<SocketAddr>,
    },
    /// Validate the config and open its databases; exit 0 when fine, 2 when not.
    Check {
        /// Config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Show how a client is located and steered, and the answer it gets.
    Explain {
        /// Config file.
        #[arg(long)]
        config: PathBuf,
        /// The client (or resolver) address.
        #[arg(long)]
        client: IpAddr,
        /// The name queried.
        name: String,
        /// The query type.
        #[arg(default_value = "A")]
        qtype: String,
    },
    /// Drain or force an endpoint on a running node (through its API; the
    /// address and token come from the node's config).
    Ctl {
        /// The node's config file.
        #[arg(long)]
        config: PathBuf,
        /// The API address, when not the config's `server.http_listen`.
        #[arg(long, value_name = "ADDR")]
        api: Option<SocketAddr>,
        /// What to do.
        #[command(subcommand)]
        action: CtlAction,
    },
    /// Anycast route gating (see docs/anycast.md).
    Anycast {
        /// What to do.
        #[command(subcommand)]
        command: AnycastCommand,
    },
    /// Build a MaxMind DB file from the readable CSV format of geoip/sample.csv.
    GeoipBuild {
        /// CSV input.
        #[arg(long)]
        input: PathBuf,
        /// MMDB output.
        #[arg(long)]
        output: PathBuf,
    },
}

/// `steerdns ctl` actions: one admin state each.
#[derive(Debug, Subcommand)]
pub enum CtlAction {
    /// No new answers; still probed; no alert.
    Drain {
        /// Pool name.
        pool: String,
        /// Endpoint name (default: its address).
        endpoint: String,
    },
    /// Answered as up whatever the probes say.
    ForceUp {
        /// Pool name.
        pool: String,
        /// Endpoint name.
        endpoint: String,
    },
    /// Answered as down whatever the probes say.
    ForceDown {
        /// Pool name.
        pool: String,
        /// Endpoint name.
        endpoint: String,
    },
    /// Health decides again.
    Auto {
        /// Pool name.
        pool: String,
        /// Endpoint name.
        endpoint: String,
    },
}

impl CtlAction {
    /// `(state, pool, endpoint)` as the API takes them.
    pub fn parts(&self) -> (&'static str, &str, &str) {
        match self {
            CtlAction::Drain { pool, endpoint } => ("drain", pool, endpoint),
            CtlAction::ForceUp { pool, endpoint } => ("force-up", pool, endpoint),
            CtlAction::ForceDown { pool, endpoint } => ("force-down", pool, endpoint),
            CtlAction::Auto { pool, endpoint } => ("auto", pool, endpoint),
        }
    }
}

/// `steerdns anycast ...`
#[derive(Debug, Subcommand)]
pub enum AnycastCommand {
    /// Show a running server's anycast state (from its HTTP API).
    Status {
        /// The server's HTTP API address (default: `server.http_listen` of --config).
        #[arg(long, value_name = "ADDR")]
        api: Option<SocketAddr>,
        /// Read the API address from this config.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print the JSON as the API sends it.
        #[arg(long)]
        json: bool,
    },
    /// The guard process steerdns starts itself (internal).
    #[command(hide = true)]
    Guard {
        /// BIRD control socket.
        #[arg(long)]
        socket: PathBuf,
        /// BIRD protocol to toggle (repeatable).
        #[arg(long, required = true)]
        protocol: Vec<String>,
        /// Withdraw when not refreshed for this long (e.g. "1s").
        #[arg(long)]
        lease: String,
    },
}
