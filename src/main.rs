use std::process::ExitCode;

use clap::Parser;
use steerdns::cli::{AnycastCommand, Cli, Command, LogFormat};
use steerdns::config::ConfigError;
use steerdns::{app, explain};

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Config errors exit with 2, everything else with 1.
fn fail(e: anyhow::Error) -> ExitCode {
    if let Some(c) = e.downcast_ref::<ConfigError>() {
        eprintln!("{c}");
        return ExitCode::from(2);
    }
    eprintln!("error: {e:#}");
    ExitCode::from(1)
}

fn anycast(command: AnycastCommand) -> anyhow::Result<()> {
    use steerdns::anycast::cli;
    match command {
        AnycastCommand::Guard {
            socket,
            protocol,
            lease,
        } => {
            let lease = steerdns::config::duration::parse(&lease)
                .map_err(|e| anyhow::anyhow!("--lease: {e}"))?;
            steerdns::anycast::guard::run_guard(&socket, &protocol, lease.0);
            Ok(())
        }
        AnycastCommand::Status { api, config, json } => {
            let addr = match (api, config) {
                (Some(a), _) => a,
                (None, Some(c)) => {
                    steerdns::reload::load_snapshot_with(
                        &c,
                        1,
                        None,
                        steerdns::snapshot::GeoMode::Explain,
                    )?
                    .settings
                    .http_listen
                }
                (None, None) => anyhow::bail!("give --api ADDR or --config FILE"),
            };
            let status = cli::fetch_status(addr, std::time::Duration::from_secs(5))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", cli::format_status(&status));
            }
            Ok(())
        }
    }
}

/// `steerdns serve`: bind, build the runtime, serve until a stop signal.
fn serve(opts: &app::Options) -> anyhow::Result<()> {
    // Before anything else, so a signal during startup is not fatal.
    app::install_signal_handlers()?;
    let bound = app::bind(opts)?;
    let rt = app::runtimes(&bound)?;
    let control = rt.control.handle().clone();
    rt.dns.block_on(async {
        let token = tokio_util::sync::CancellationToken::new();
        let mut server = app::serve_on(bound, control, token).await?;
        server.wait_for_signals().await?;
        server.stop();
        Ok::<(), anyhow::Error>(())
    })?;
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let result = match cli.command {
        Command::Serve {
            config,
            dns_listen,
            http_listen,
        } => serve(&app::Options {
            config,
            dns_listen,
            http_listen,
        }),
        Command::Check { config } => steerdns::reload::load_snapshot(&config, 1)
            .map(|s| {
                println!(
                    "{}: ok ({} zones, {} pools, {} balanced names)",
                    config.display(),
                    s.zones.zones.len(),
                    s.pools.len(),
                    s.balancers.len()
                );
            })
            .map_err(Into::into),
        Command::Explain {
            config,
            client,
            name,
            qtype,
        } => steerdns::reload::load_snapshot_with(
            &config,
            1,
            None,
            steerdns::snapshot::GeoMode::Explain,
        )
        .map_err(anyhow::Error::from)
        .and_then(|s| explain::explain(&s, None, client, &name, &qtype).map_err(Into::into))
        .map(|report| print!("{report}")),
        Command::Ctl {
            config,
            api,
            action,
        } => steerdns::reload::load_snapshot(&config, 1)
            .map_err(anyhow::Error::from)
            .and_then(|s| {
                let (state, pool, endpoint) = action.parts();
                let addr = api
                    .unwrap_or_else(|| steerdns::cluster::ctl::api_address(s.settings.http_listen));
                steerdns::cluster::ctl::set_state(
                    addr,
                    s.settings.api_token.as_deref(),
                    pool,
                    endpoint,
                    state,
                )
                .map_err(anyhow::Error::msg)
            })
            .map(|body| println!("{body}")),
        Command::Anycast { command } => anycast(command),
        Command::GeoipBuild { input, output } => {
            steerdns::geo::sample::build_from_csv(&input, &output)
                .map(|n| println!("wrote {} ({n} networks)", output.display()))
                .map_err(Into::into)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}
