//! Compiles `proto/cairn/v1/cairn.proto` with the pure-Rust `protox` compiler (no `protoc` needed) and
//! writes the encoded file descriptor set next to the generated code for gRPC server reflection.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(["cairn/v1/cairn.proto"], ["proto"])?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("cairn_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .btree_map(".")
        .compile_fds(fds)?;
    Ok(())
}
