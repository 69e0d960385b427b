//! External embedding models: a namespace whose vectors the caller brings names its model, and its roots commit
//! that name and the vectors' dimension through one hash (docs/PROOFS.md, "External models").

use crate::merkle::Hash;

/// Longest external model name, in bytes.
pub const MAX_NAME: usize = 128;
/// Largest dimension an external model may have.
pub const MAX_DIM: u16 = 4096;

/// Why an external model description is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExternalModelError {
    /// The name is empty, too long, or has a byte outside `[A-Za-z0-9._:/@+-]`.
    #[error("model name must be 1..={MAX_NAME} bytes of [A-Za-z0-9._:/@+-]")]
    Name,
    /// The dimension is 0 or above [`MAX_DIM`].
    #[error("dimension must be 1..={MAX_DIM}")]
    Dim,
}

/// A model the caller embeds with: its name (as the caller calls it, e.g. `text-embedding-3-small`) and the
/// dimension of its vectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalModel {
    /// The model's name.
    pub name: String,
    /// Components per vector.
    pub dim: u16,
}

impl ExternalModel {
    /// Checks a name and dimension.
    pub fn new(name: &str, dim: u16) -> Result<Self, ExternalModelError> {
        let ok = |b: u8| b.is_ascii_alphanumeric() || b"._:/@+-".contains(&b);
        if name.is_empty() || name.len() > MAX_NAME || !name.bytes().all(ok) {
            return Err(ExternalModelError::Name);
        }
        if dim == 0 || dim > MAX_DIM {
            return Err(ExternalModelError::Dim);
        }
        Ok(ExternalModel {
            name: name.to_owned(),
            dim,
        })
    }

    /// The model hash a root commits for this model: BLAKE3 derive-key
    /// `"cairn 2026 external embedding model v1"` over `u64be(len name) ‖ name ‖ u16be(dim)`. It never equals a
    /// provisioned model's hash (another derive-key context), so a verifier can tell that it cannot re-embed.
    pub fn hash(&self) -> Hash {
        let mut h = blake3::Hasher::new_derive_key("cairn 2026 external embedding model v1");
        h.update(&(self.name.len() as u64).to_be_bytes());
        h.update(self.name.as_bytes());
        h.update(&self.dim.to_be_bytes());
        *h.finalize().as_bytes()
    }

    /// The node's label for it: `external:NAME/DIM`.
    pub fn label(&self) -> String {
        format!("external:{}/{}", self.name, self.dim)
    }
}

/// The identity of a provisioned (node-run) embedding model, the hash its roots commit: BLAKE3 derive-key
/// `"cairn 2026 embedding model identity v1"` over `u64be(len file_name) ‖ file_name ‖ sha256hex(file)` for each
/// file of the model's manifest, in byte order of the names (docs/PROOFS.md, "Embedding model identity"). Nodes
/// compute it when they load a model, and a node fetching a model from a peer recomputes it from the manifest
/// the peer sent before trusting any file.
pub fn provisioned_model_hash<'a>(files: impl IntoIterator<Item = (&'a str, &'a str)>) -> Hash {
    let mut sorted: Vec<(&str, &str)> = files.into_iter().collect();
    sorted.sort_unstable();
    let mut h = blake3::Hasher::new_derive_key("cairn 2026 embedding model identity v1");
    for (name, sha256_hex) in sorted {
        h.update(&(name.len() as u64).to_be_bytes());
        h.update(name.as_bytes());
        h.update(sha256_hex.as_bytes());
    }
    *h.finalize().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_matches_the_documented_vector() {
        let m = ExternalModel::new("text-embedding-3-small", 1536).expect("valid");
        assert_eq!(
            hex::encode(m.hash()),
            "a5ae3d6f5065d7c2d60bf9389b84e094de6394a18b84165e69c3c16d3a86e279",
            "docs/PROOFS.md, External models"
        );
        let other = ExternalModel::new("text-embedding-3-small", 512).expect("valid");
        assert_ne!(m.hash(), other.hash(), "the dimension is committed");
    }

    #[test]
    fn names_and_dimensions_are_checked() {
        assert_eq!(ExternalModel::new("", 8), Err(ExternalModelError::Name));
        assert_eq!(ExternalModel::new("a b", 8), Err(ExternalModelError::Name));
        assert_eq!(
            ExternalModel::new(&"x".repeat(MAX_NAME + 1), 8),
            Err(ExternalModelError::Name)
        );
        assert_eq!(ExternalModel::new("m", 0), Err(ExternalModelError::Dim));
        assert_eq!(
            ExternalModel::new("m", MAX_DIM + 1),
            Err(ExternalModelError::Dim)
        );
        assert!(ExternalModel::new("org/model-v1.5@2024+q", MAX_DIM).is_ok());
    }
}
