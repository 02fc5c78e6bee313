//! `modelroute-operator`: parse the command line, start logging, run the operator.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use modelroute_operator::cli::Args;
use modelroute_operator::{LeaseOptions, Options, SourceOptions, tls};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(&args.log, &args.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let started = match options(&args) {
            Ok(options) => modelroute_operator::start(options)
                .await
                .map_err(anyhow::Error::from),
            Err(e) => Err(e),
        };
        match started {
            Ok(running) => {
                running.run_until(shutdown_signal()).await;
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "cannot start");
                ExitCode::FAILURE
            }
        }
    })
}

fn options(args: &Args) -> anyhow::Result<Options> {
    let tls = match (&args.tls_cert, &args.tls_key, &args.tls_generate) {
        (Some(cert), Some(key), _) => tls::load(cert, key)?,
        (_, _, Some(dir)) => tls::generate_or_reuse(dir, &args.tls_san)?,
        _ => anyhow::bail!("give --tls-cert and --tls-key, or --tls-generate DIR"),
    };
    let source = match &args.routes_dir {
        Some(routes_dir) => {
            let token_file = args
                .static_token_file
                .as_ref()
                .context("--routes-dir needs --static-token-file")?;
            let static_token = std::fs::read_to_string(token_file)
                .with_context(|| format!("cannot read {}", token_file.display()))?;
            anyhow::ensure!(
                static_token.trim().len() >= 16,
                "{}: the static token must be at least 16 characters",
                token_file.display()
            );
            SourceOptions::Files {
                routes_dir: routes_dir.clone(),
                secrets_dir: args.secrets_dir.clone(),
                static_token,
            }
        }
        None => SourceOptions::Kubernetes(LeaseOptions {
            namespace: args.namespace.clone(),
            name: args.lease_name.clone(),
            identity: args.identity.clone(),
        }),
    };
    Ok(Options {
        source,
        grpc_listen: args.grpc_listen,
        admin_listen: args.admin_listen,
        tls,
        drain_timeout: args.drain_timeout.into(),
    })
}

fn init_logging(level: &str, format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// SIGTERM (the kubelet) or Ctrl-C.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        () = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
