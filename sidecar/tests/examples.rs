//! Every ModelRoute in examples/ loads in the sidecar as it is (keys from the environment
//! stood in for by literal values): validation, prices for every budgeted target, and the
//! limits all compile.

use modelroute_sidecar::App;

#[test]
fn every_example_compiles_into_a_route_table() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("apiKey: {env: ", "apiKey: {value: ");
        let tmp = tempfile::tempdir().unwrap();
        let copy = tmp.path().join("route.yaml");
        std::fs::write(&copy, text).unwrap();
        let docs = modelroute_sidecar::config::file::read(&copy)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let app = App::new(1024);
        let table = app
            .apply(&docs, "test")
            .unwrap_or_else(|e| panic!("{}: {:?}", path.display(), e.problems));
        assert!(table.aliases().count() >= 1, "{}", path.display());
        seen += 1;
    }
    assert!(seen >= 4, "examples found: {seen}");
}
