//! Compiles the etcd v3 API and the peer protocol with a vendored `protoc`,
//! so the build needs no system protobuf compiler.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        let protoc = protoc_bin_vendored::protoc_bin_path()?;
        // prost-build finds the compiler through PROTOC.
        std::env::set_var("PROTOC", protoc);
    }
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptors = out_dir.join("descriptors.bin");
    tonic_prost_build::configure().generate_default_stubs(true).file_descriptor_set_path(&descriptors).compile_protos(
        &[
            "proto/mvccpb/kv.proto",
            "proto/authpb/auth.proto",
            "proto/etcdserverpb/rpc.proto",
            "proto/v3lockpb/v3lock.proto",
            "proto/v3electionpb/v3election.proto",
            "proto/peerpb/peer.proto",
        ],
        &["proto"],
    )?;
    // serde for the etcd API in grpc-gateway's JSON (the HTTP gateway): proto
    // field names, 64-bit integers as strings, bytes as base64.
    pbjson_build::Builder::new()
        .register_descriptors(&std::fs::read(&descriptors)?)?
        .preserve_proto_field_names()
        .build(&[".mvccpb", ".authpb", ".etcdserverpb", ".v3lockpb", ".v3electionpb"])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
