//! Compiles the contract with protox (a protobuf compiler in Rust), so building needs
//! no `protoc` on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "modelroute/discovery/v1/discovery.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["."])?;
    tonic_prost_build::configure()
        // Snapshots go to many sidecars: `Bytes` makes each copy a reference count.
        .bytes(".")
        .compile_fds(descriptors)?;
    Ok(())
}
