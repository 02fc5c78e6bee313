//! Writes the ModelRoute CRD manifest generated from the Rust types to stdout.
//!
//! `cargo run -p modelroute-crds --bin crdgen > crds/modelroute.dev_modelroutes.yaml`

use std::io::Write;

use kube::CustomResourceExt;
use modelroute_crds::ModelRoute;

fn main() -> std::process::ExitCode {
    let yaml = match serde_saphyr::to_string(&ModelRoute::crd()) {
        Ok(yaml) => yaml,
        Err(e) => {
            eprintln!("crdgen: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(yaml.as_bytes()) {
        eprintln!("crdgen: {e}");
        return std::process::ExitCode::FAILURE;
    }
    std::process::ExitCode::SUCCESS
}
