//! `modelroute-operator`: parse the command line, start logging, run the operator.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use modelroute_operator::cli::Args;
use modelroute_operator::inject::InjectConfig;
use modelroute_operator::{
    KubernetesOptions, LeaseOptions, Options, SecretTls, SourceOptions, TlsSource, tls,
};
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
    let tls = match (
        &args.tls_cert,
        &args.tls_key,
        &args.tls_generate,
        &args.tls_secret,
    ) {
        (Some(cert), Some(key), _, _) => {
            // Read once here so a wrong path fails the start, not the first handshake.
            tls::load(cert, key, args.tls_ca.as_deref())?;
            TlsSource::Files(tls::files::CertFiles {
                cert: cert.clone(),
                key: key.clone(),
                ca: args.tls_ca.clone(),
            })
        }
        (_, _, Some(dir), _) => TlsSource::Fixed(tls::generate_or_reuse(dir, &args.tls_san)?),
        (_, _, _, Some(secret)) => TlsSource::Secret(SecretTls {
            name: secret.clone(),
            sans: args.tls_san.clone(),
        }),
        _ => anyhow::bail!("give --tls-secret, --tls-cert and --tls-key, or --tls-generate DIR"),
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
                ledger_file: args.ledger_file.clone(),
            }
        }
        None => {
            let inject = match &args.inject_config {
                Some(path) => InjectConfig::load(path)?,
                None => InjectConfig::default(),
            };
            SourceOptions::Kubernetes(Box::new(KubernetesOptions {
                lease: LeaseOptions {
                    namespace: args.namespace.clone(),
                    name: args.lease_name.clone(),
                    identity: args.identity.clone(),
                    owner: None,
                },
                webhook_configuration: args.webhook_configuration.clone(),
                webhook_listen: (!args.no_webhook).then_some(args.webhook_listen),
                inject,
                leader_pod_label: args.leader_pod_label,
            }))
        }
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
