//! The `cairn.v1` gRPC contract, generated from `proto/cairn/v1/cairn.proto`.
//!
//! The `.proto` file is the documentation of every RPC and field; this crate only re-exports what
//! `tonic-prost-build` generates from it, plus the encoded descriptor set that server reflection serves.

#![forbid(unsafe_code)]

/// Messages and service stubs of package `cairn.v1`.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("cairn.v1");
}

/// The encoded `FileDescriptorSet` of the contract, for `tonic-reflection`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/cairn_descriptor.bin"));

pub use v1::*;
