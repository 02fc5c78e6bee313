//! `modelroute-sidecar`: parse the command line, start logging and traces, run the sidecar.

use std::process::ExitCode;

use clap::Parser;
use modelroute_otel as otel;
use modelroute_sidecar::cli::Args;
use modelroute_sidecar::telemetry;
use prometheus_client::metrics::counter::Counter;

fn main() -> ExitCode {
    let args = Args::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(n) = args.worker_threads {
        runtime.worker_threads(n.max(1));
    }
    let runtime = match runtime.build() {
        Ok(rt) => rt,
        Err(e) => {
            telemetry::init_logging(args.log_format, &args.log);
            tracing::error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    let options = args.options();
    // The OTLP gRPC channel lives on the runtime.
    let exporting = runtime.block_on(async {
        let (tracer, exporting, problem) = traces(&args, &options.spans_dropped);
        telemetry::init(args.log_format, &args.log, tracer);
        if let Some(e) = problem {
            tracing::error!(error = %e, "traces are off");
        }
        exporting
    });
    let code = runtime.block_on(async {
        let running = match modelroute_sidecar::start(options).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                return ExitCode::FAILURE;
            }
        };
        running.run_until(shutdown_signal()).await;
        ExitCode::SUCCESS
    });
    if let Some(exporting) = exporting {
        exporting.shutdown();
    }
    code
}

/// The span exporter from the `OTEL_*` environment: none when traces are off; an error
/// leaves them off and is logged once logging is up.
fn traces(
    args: &Args,
    dropped: &Counter,
) -> (
    Option<opentelemetry_sdk::trace::SdkTracer>,
    Option<otel::Exporting>,
    Option<otel::OtelError>,
) {
    let settings = match otel::Settings::from_env(|name| std::env::var(name).ok()) {
        Ok(Some(settings)) => settings,
        Ok(None) => return (None, None, None),
        Err(e) => return (None, None, Some(e)),
    };
    let env = |name: &str| std::env::var(name).unwrap_or_default();
    let identity = otel::Identity {
        service: "modelroute-sidecar",
        pod: args.pod_name.clone(),
        namespace: args.pod_namespace.clone(),
        node: env("NODE_NAME"),
        service_account: env("POD_SERVICE_ACCOUNT"),
    };
    match otel::start(&settings, &identity, dropped.clone()) {
        Ok((tracer, exporting)) => (Some(tracer), Some(exporting), None),
        Err(e) => (None, None, Some(e)),
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
