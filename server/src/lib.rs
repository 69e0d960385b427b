//! # cairn-server
//!
//! The Cairn node. The data path reads from module names:
//! [`service`] (gRPC) → [`engine`] (validation, dedup, search) → [`embed`] (local model) →
//! [`blobs`] (record bytes as iroh blobs) + [`store`] (durable rows in redb) → [`ann`] (HNSW serving index).
//! [`p2p`] replicates namespaces between nodes over iroh.
//! [`node`] wires them into a running server; [`cli`] is the `cairn` command line.

pub mod anchoring;
pub mod ann;
pub mod auth;
pub mod blobs;
pub mod cli;
pub mod embed;
pub mod engine;
pub mod error;
pub mod identity;
pub mod mcp;
pub mod metrics;
pub mod models;
pub mod node;
pub mod otlp;
pub mod p2p;
pub mod published;
pub mod service;
pub mod status_map;
pub mod store;
pub mod tls;
