//! Memory ids: 32-byte BLAKE3 hashes of canonical record bytes, shown as 64 lowercase hex characters.

use std::fmt;
use std::str::FromStr;

/// A memory's id: BLAKE3 of its canonical record bytes, equal to its iroh blob hash.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemoryId(pub [u8; 32]);

/// Why a string is not a memory id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a memory id (expected 64 hex characters): {0:?}")]
pub struct ParseIdError(pub String);

impl MemoryId {
    /// The id of some canonical record bytes.
    pub fn of_bytes(bytes: &[u8]) -> Self {
        MemoryId(*blake3::hash(bytes).as_bytes())
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64-character lowercase hex form used in the API.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl FromStr for MemoryId {
    type Err = ParseIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let shown = || s.chars().take(80).collect::<String>();
        if s.len() != 64 {
            return Err(ParseIdError(shown()));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| ParseIdError(shown()))?;
        Ok(MemoryId(out))
    }
}

impl fmt::Display for MemoryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for MemoryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MemoryId({})", self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_rejects() {
        let id = MemoryId::of_bytes(b"x");
        assert_eq!(id.to_hex().parse::<MemoryId>().unwrap(), id);
        assert!("zz".parse::<MemoryId>().is_err());
        assert!("g".repeat(64).parse::<MemoryId>().is_err());
        assert!("é".repeat(32).parse::<MemoryId>().is_err());
        // Uppercase hex is accepted and normalised.
        assert_eq!(id.to_hex().to_uppercase().parse::<MemoryId>().unwrap(), id);
    }
}
