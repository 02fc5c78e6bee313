//! `modelroute-operator`: parse the command line, start logging, run the operator.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use modelroute_operator::cli::Args;
use modelroute_operator::inject::InjectConfig;
use modelroute_operator::{
    KubernetesOptions, LeaseOptions, Options, SecretTls, SourceOptions, TlsSource, tls,
};
use modelroute_otel as otel;
use opentelemetry_sdk::trace::SdkTracer;
use prometheus_client::metrics::counter::Counter;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            init_logging(&args.log, &args.log_format, None);
            tracing::error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    let spans_dropped = Counter::default();
    // The OTLP gRPC channel lives on the runtime.
    let exporting = runtime.block_on(async {
        let (tracer, exporting, problem) = match traces(&args, &spans_dropped) {
            Ok(Some((tracer, exporting))) => (Some(tracer), Some(exporting), None),
            Ok(None) => (None, None, None),
            Err(e) => (None, None, Some(e)),
        };
        init_logging(&args.log, &args.log_format, tracer);
        if let Some(e) = problem {
            tracing::error!(error = %e, "traces are off");
        }
        exporting
    });
    let code = runtime.block_on(async {
        let started = match options(&args, spans_dropped) {
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
    });
    if let Some(exporting) = exporting {
        exporting.shutdown();
    }
    code
}

fn options(args: &Args, spans_dropped: Counter) -> anyhow::Result<Options> {
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
        spans_dropped,
    })
}

/// The span exporter from the `OTEL_*` environment; `None` when traces are off.
fn traces(
    args: &Args,
    dropped: &Counter,
) -> Result<Option<(SdkTracer, otel::Exporting)>, otel::OtelError> {
    let Some(settings) = otel::Settings::from_env(|name| std::env::var(name).ok())? else {
        return Ok(None);
    };
    let identity = otel::Identity {
        service: "modelroute-operator",
        pod: args.identity.clone(),
        namespace: args.namespace.clone(),
        node: std::env::var("NODE_NAME").unwrap_or_default(),
        service_account: std::env::var("POD_SERVICE_ACCOUNT").unwrap_or_default(),
    };
    otel::start(&settings, &identity, dropped.clone()).map(Some)
}

/// Log lines on stderr and, with a tracer, the spans exported through OpenTelemetry.
fn init_logging(level: &str, format: &str, tracer: Option<SdkTracer>) {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    // The spans are for the exporter; in log lines they would only be noise.
    let filter = match format!("{}=off", otel::TARGET).parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    };
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let lines = if format == "json" {
        lines.json().boxed()
    } else {
        lines.boxed()
    };
    let logs = tracing_subscriber::registry().with(lines.with_filter(filter));
    // No span layer at all without a tracer (see `modelroute_otel::layer`).
    let _ = match tracer {
        Some(tracer) => logs.with(otel::layer(tracer)).try_init(),
        None => logs.try_init(),
    };
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
