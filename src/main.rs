//! `sluice`: parses the command line and hands over to `sluice::cli`.

#![deny(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sluice::duration::parse_duration;
use sluice::simulate::SimConfig;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "An OpenAI-compatible LLM gateway that triages requests by SLA and prices every answer"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// Config file (TOML); every setting has a default.
        #[arg(long, env = "SLUICE_CONFIG")]
        config: Option<PathBuf>,
        /// Wire every provider to a built-in simulated provider (no keys, no network).
        #[arg(long)]
        simulate: bool,
    },
    /// Run only the simulated provider (OpenAI wire format).
    Simulate {
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: SocketAddr,
        /// Added before every answer, e.g. 20ms.
        #[arg(long, default_value = "0ms", value_parser = parse_duration)]
        latency: std::time::Duration,
        /// Delay between streamed chunks, e.g. 5ms.
        #[arg(long, default_value = "0ms", value_parser = parse_duration)]
        stream_chunk_delay: std::time::Duration,
        /// Fraction of requests answered 429 (0..1).
        #[arg(long, default_value_t = 0.0)]
        error_429_rate: f64,
        /// Fraction of requests answered 500 (0..1).
        #[arg(long, default_value_t = 0.0)]
        error_500_rate: f64,
        /// Seed for the fault RNG.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Prompt prefix length (tokens) from which repeats are reported as cached.
        #[arg(long, default_value_t = 1024)]
        cache_min_tokens: u64,
        /// Time from batch creation to completion, e.g. 2s (0ms: done at the first read).
        #[arg(long, default_value = "2s", value_parser = parse_duration)]
        batch_turnaround: std::time::Duration,
        /// How long a cancelled batch stays `cancelling`, e.g. 1s.
        #[arg(long, default_value = "0ms", value_parser = parse_duration)]
        cancel_delay: std::time::Duration,
        /// Fraction of `service_tier: "flex"` requests answered 429 Resource Unavailable (0..1).
        #[arg(long, default_value_t = 0.0)]
        flex_429_rate: f64,
    },
    /// Gateway + simulated provider + a sample workload; prints the savings table.
    Demo,
    /// Cost calculator and workload triager.
    Estimate(sluice::estimate::EstimateArgs),
    /// Savings per route, client and tier from the durable ledger.
    Report {
        #[arg(long, env = "SLUICE_CONFIG")]
        config: Option<PathBuf>,
        /// Only answers from this long ago until now (e.g. 24h, 7d); default all.
        #[arg(long, value_parser = parse_duration)]
        since: Option<std::time::Duration>,
    },
    /// Validate config and policies and print the resolved client/route table.
    Check {
        #[arg(long, env = "SLUICE_CONFIG")]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Serve { .. } | Command::Simulate { .. } => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .init();

    let result = match cli.command {
        Command::Estimate(args) => {
            sluice::estimate::run(&args, &mut std::io::stdout().lock()).map_err(|e| e.to_string())
        }
        Command::Check { config } => {
            sluice::cli::check(config, &mut std::io::stdout().lock()).map_err(|e| e.to_string())
        }
        command => {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            rt.block_on(async move {
                match command {
                    Command::Serve { config, simulate } => sluice::cli::serve(config, simulate)
                        .await
                        .map_err(|e| e.to_string()),
                    Command::Simulate {
                        listen,
                        latency,
                        stream_chunk_delay,
                        error_429_rate,
                        error_500_rate,
                        seed,
                        cache_min_tokens,
                        batch_turnaround,
                        cancel_delay,
                        flex_429_rate,
                    } => {
                        let cfg = SimConfig {
                            latency,
                            stream_chunk_delay,
                            error_429_rate,
                            error_500_rate,
                            seed,
                            cache_min_tokens,
                            batch_turnaround,
                            cancel_delay,
                            flex_429_rate,
                            ..SimConfig::default()
                        };
                        sluice::cli::simulate(listen, cfg)
                            .await
                            .map_err(|e| e.to_string())
                    }
                    Command::Report { config, since } => {
                        sluice::cli::report(config, since, &mut std::io::stdout())
                            .await
                            .map_err(|e| e.to_string())
                    }
                    Command::Demo => sluice::demo::run(&mut std::io::stdout())
                        .await
                        .map_err(|e| e.to_string()),
                    Command::Estimate(_) | Command::Check { .. } => Ok(()),
                }
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
