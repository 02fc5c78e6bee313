//! `modelroute-sidecar`: parse the command line, start logging, run the sidecar.

use std::process::ExitCode;

use clap::Parser;
use modelroute_sidecar::cli::Args;
use modelroute_sidecar::telemetry;

fn main() -> ExitCode {
    let args = Args::parse();
    telemetry::init_logging(args.log_format, &args.log);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(n) = args.worker_threads {
        runtime.worker_threads(n.max(1));
    }
    let runtime = match runtime.build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let running = match modelroute_sidecar::start(args.options()).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                return ExitCode::FAILURE;
            }
        };
        running.run_until(shutdown_signal()).await;
        ExitCode::SUCCESS
    })
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
