//! Generates the Rust code of every contract under `proto/` with a vendored
//! `protoc`, so a fresh machine needs no system protobuf compiler.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "proto/platform/common/v1/common.proto",
    "proto/platform/events/v1/events.proto",
    "proto/platform/auth/v1/auth.proto",
    "proto/platform/users/v1/users.proto",
    "proto/platform/chat/v1/chat.proto",
    "proto/platform/bots/v1/bots.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let well_known = protoc_bin_vendored::include_path()?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);

    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("platform_descriptor.bin"))
        .compile_with_config(
            config,
            PROTOS,
            &[
                "proto",
                well_known.to_str().ok_or("non-UTF-8 include path")?,
            ],
        )?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
