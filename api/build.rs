//! Compiles the Feast protos in `proto/` with protox (pure Rust, no system
//! protoc) and generates prost messages, plus tonic stubs when the `grpc`
//! feature is on.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/feast/types/Value.proto",
        "proto/feast/types/EntityKey.proto",
        "proto/feast/serving/ServingService.proto",
        "proto/feast/core/Registry.proto",
        "proto/feast/registry/RegistryServer.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    let grpc = std::env::var_os("CARGO_FEATURE_GRPC").is_some();
    tonic_prost_build::configure()
        .build_server(grpc)
        .build_client(grpc)
        .build_transport(false)
        .compile_fds(fds)?;
    Ok(())
}
