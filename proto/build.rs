//! Compiles the etcd v3 API and the peer protocol with a vendored `protoc`,
//! so the build needs no system protobuf compiler.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        let protoc = protoc_bin_vendored::protoc_bin_path()?;
        // prost-build finds the compiler through PROTOC.
        std::env::set_var("PROTOC", protoc);
    }
    tonic_prost_build::configure().generate_default_stubs(true).compile_protos(
        &[
            "proto/mvccpb/kv.proto",
            "proto/authpb/auth.proto",
            "proto/etcdserverpb/rpc.proto",
            "proto/peerpb/peer.proto",
        ],
        &["proto"],
    )?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
