//! # cairn-index
//!
//! The pure core of Cairn: everything a third party needs to check a Cairn node's answers, with no I/O, no
//! async runtime and no network, so it can be embedded anywhere (CLI, other languages via FFI, wasm).
//!
//! - [`record`]: the canonical, versioned byte encoding of a memory. Its BLAKE3 hash is the memory's id and
//!   its iroh blob hash. Specified byte by byte in `docs/PROOFS.md`.
//! - [`validate`]: the rules a namespace, a text and metadata must satisfy, shared by node and clients.
//! - [`id`]: the 32-byte memory id and its hex form.
//! - [`commit`]: leaf encodings of what a namespace commits to (int8 vectors, HNSW graph, timeline).
//! - [`merkle`]: the domain-separated complete binary Merkle tree and its range-checked multiproofs.
//! - [`root`]: signed, hash-chained root records.
//! - [`grants`]: owner-signed grant sets: which peers may fetch a namespace.
//! - [`hnsw`]: the HNSW graph an owner builds and serves from (int8 codes, deterministic, reports what changed).
//! - [`search`]: the deterministic integer HNSW search that recall proofs replay.
//! - [`proof`]: proof wire formats and the verifiers for Get, List and Recall.
//! - [`lexical`]: the deterministic tokenizer, term leaves, fixed-point BM25 and rank fusion.
//! - [`hybrid`]: lexical and hybrid recall proofs and their verifier.
//! - [`filtered`]: filtered recall proofs (metadata pairs and a time range) and their verifier.
//! - [`sync`]: the replication protocol's messages (catch-up, snapshots, roots, grant sets, gossip, alerts).
//!
//! ```
//! use cairn_index::record::{MemoryRecord, Metadata};
//!
//! let mut metadata = Metadata::new();
//! metadata.insert("speaker".into(), "alice".into());
//! let record = MemoryRecord {
//!     namespace: "agents/alice".into(),
//!     created_at: 1_700_000_000_000,
//!     salt: [7; 16],
//!     text: "Alice prefers tea to coffee.".into(),
//!     metadata,
//! };
//! let bytes = record.encode();
//! let id = record.id();
//! assert_eq!(id, cairn_index::id::MemoryId::of_bytes(&bytes));
//! assert_eq!(MemoryRecord::decode(&bytes).unwrap(), record);
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod anchor;
pub mod commit;
pub mod filtered;
pub mod grants;
pub mod hnsw;
pub mod hybrid;
pub mod id;
pub mod lexical;
pub mod merkle;
pub mod model;
pub mod model_offer;
pub mod paged;
pub mod proof;
pub mod record;
pub mod root;
pub mod search;
pub mod sync;
pub mod validate;
pub mod vcode;
pub mod wire;
