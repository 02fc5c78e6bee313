//! The committed CRD manifest must be exactly what the Rust types generate.
//! Regenerate with: `cargo run -p modelroute-crds --bin crdgen > crds/modelroute.dev_modelroutes.yaml`

use kube::CustomResourceExt;
use modelroute_crds::ModelRoute;

#[test]
fn committed_crd_matches_the_types() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/modelroute.dev_modelroutes.yaml"
    );
    let committed = std::fs::read_to_string(path).expect("read committed CRD");
    let generated = serde_saphyr::to_string(&ModelRoute::crd()).unwrap();
    assert!(
        committed == generated,
        "crds/modelroute.dev_modelroutes.yaml is stale; regenerate it with \
         `cargo run -p modelroute-crds --bin crdgen > crds/modelroute.dev_modelroutes.yaml`"
    );
}

#[test]
fn every_example_is_a_valid_modelroute() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let docs = modelroute_crds::from_yaml_documents(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for doc in docs {
            let problems = modelroute_crds::validate(&doc.spec);
            assert!(problems.is_empty(), "{}: {problems:?}", path.display());
            seen += 1;
        }
    }
    assert!(seen >= 1, "no examples found in {dir}");
}
