//! Compact wire coding of int8 vectors inside recall proofs (docs/PROOFS.md, "Vector coding").
//!
//! Committed vectors are unit vectors × 127, so their components cluster near zero (about ±7 for 384
//! dimensions). Each component is zigzag-mapped and Rice-coded with a fixed parameter, which takes a proof's
//! vectors from 8 bits to about 5 bits a component. The coding is a bijection: a fixed parameter, a prefix
//! code and zero padding bits leave exactly one encoding per vector, so a changed byte always changes the
//! decoded vector (and so the leaf hash) or fails to decode. Only the wire changes; leaves still hash the
//! plain int8 bytes.

use crate::wire::{Reader, Short};

/// The Rice parameter: each component is `q` zero bits, a one bit, then `RICE_K` low bits.
pub const RICE_K: u32 = 3;
/// Largest quotient a component can have (zigzag 255 >> 3).
const MAX_Q: u32 = 255 >> RICE_K;

/// Why a coded vector was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VcodeError {
    /// The bytes ended inside the vector.
    #[error("coded vector is truncated")]
    Short,
    /// A quotient longer than any int8 can need.
    #[error("coded vector component is out of range")]
    Range,
    /// Non-zero bits after the last component.
    #[error("coded vector has non-zero padding")]
    Padding,
}

impl From<Short> for VcodeError {
    fn from(_: Short) -> Self {
        VcodeError::Short
    }
}

fn zigzag(x: i8) -> u32 {
    (((x as i32) << 1) ^ ((x as i32) >> 7)) as u32 & 0xff
}

fn unzigzag(z: u32) -> i8 {
    ((z >> 1) as i32 ^ -((z & 1) as i32)) as i8
}

/// Appends the coding of `v` to `out`: the components' codes, MSB first, zero-padded to a whole byte.
pub fn encode_vector(v: &[i8], out: &mut Vec<u8>) {
    let mut acc: u64 = 0;
    let mut bits: u32 = 0;
    for &x in v {
        let z = zigzag(x);
        let q = z >> RICE_K;
        let code_len = q + 1 + RICE_K;
        let code = (1u64 << RICE_K) | u64::from(z & ((1 << RICE_K) - 1));
        // code_len ≤ 36, so flush whole bytes first to keep room in the accumulator.
        while bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
        acc = (acc << code_len) | code;
        bits += code_len;
    }
    while bits >= 8 {
        bits -= 8;
        out.push((acc >> bits) as u8);
    }
    if bits > 0 {
        out.push((acc << (8 - bits)) as u8);
    }
}

/// The coded size in bytes of `v`.
pub fn encoded_len(v: &[i8]) -> usize {
    let bits: usize = v
        .iter()
        .map(|&x| (zigzag(x) >> RICE_K) as usize + 1 + RICE_K as usize)
        .sum();
    bits.div_ceil(8)
}

/// Reads one coded vector of `dim` components from `r`. Never panics; consumes nothing on error that matters
/// (the caller rejects the whole proof).
pub fn decode_vector(r: &mut Reader<'_>, dim: usize) -> Result<Vec<i8>, VcodeError> {
    let rest = r.peek_rest();
    let avail_bits = rest.len() as u64 * 8;
    // The 64 bits from bit `pos` on (zeros past the end; `avail_bits` bounds what may be used). A component
    // needs at most 36 bits and the window always has at least 57.
    let window = |pos: u64| -> u64 {
        let byte = (pos / 8) as usize;
        let word = match rest.get(byte..byte + 8) {
            Some(b) => {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                u64::from_be_bytes(a)
            }
            None => {
                let mut a = [0u8; 8];
                let tail = rest.get(byte..).unwrap_or(&[]);
                a[..tail.len()].copy_from_slice(tail);
                u64::from_be_bytes(a)
            }
        };
        word << (pos % 8)
    };
    let mut out = Vec::with_capacity(dim);
    // `pos` is where the window `w` starts; `used` bits of it are consumed. A window holds ≥ 57 valid bits,
    // so while `used` ≤ 21 the next component (≤ 36 bits) still lies within it.
    let (mut pos, mut w, mut used): (u64, u64, u32) = (0, window(0), 0);
    for _ in 0..dim {
        if used > 21 {
            pos += u64::from(used);
            w = window(pos);
            used = 0;
        }
        let q = w.leading_zeros();
        let at = pos + u64::from(used);
        if q > MAX_Q {
            return Err(if at + u64::from(q) >= avail_bits {
                VcodeError::Short
            } else {
                VcodeError::Range
            });
        }
        let len = q + 1 + RICE_K;
        if at + u64::from(len) > avail_bits {
            return Err(VcodeError::Short);
        }
        let low = ((w << (q + 1)) >> (64 - RICE_K)) as u32;
        out.push(unzigzag((q << RICE_K) | low));
        w <<= len;
        used += len;
    }
    pos += u64::from(used);
    let used = pos.div_ceil(8) as usize;
    let pad = (used as u64 * 8 - pos) as u32;
    if pad > 0 {
        let last = rest.get(used - 1).copied().unwrap_or(0);
        if last & ((1u8 << pad) - 1) != 0 {
            return Err(VcodeError::Padding);
        }
    }
    r.bytes(used)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(v: &[i8]) {
        let mut b = Vec::new();
        encode_vector(v, &mut b);
        assert_eq!(b.len(), encoded_len(v));
        b.push(0xee);
        let mut r = Reader::new(&b);
        assert_eq!(decode_vector(&mut r, v.len()).unwrap(), v);
        assert_eq!(r.remaining(), 1);
    }

    #[test]
    fn roundtrips_every_value() {
        let all: Vec<i8> = (i8::MIN..=i8::MAX).collect();
        roundtrip(&all);
        roundtrip(&[]);
        roundtrip(&[0]);
        roundtrip(&[-128, 127, -127, 0, 1, -1]);
        for x in i8::MIN..=i8::MAX {
            roundtrip(&[x; 3]);
        }
    }

    #[test]
    fn zigzag_is_a_bijection() {
        for x in i8::MIN..=i8::MAX {
            assert!(zigzag(x) <= 255);
            assert_eq!(unzigzag(zigzag(x)), x);
        }
    }

    #[test]
    fn known_bits() {
        // 0 → z 0 → "1 000"; -1 → z 1 → "1 001"; 1 → z 2 → "1 010"; 4 → z 8 → "01 000".
        let mut b = Vec::new();
        encode_vector(&[0, -1, 1, 4], &mut b);
        assert_eq!(b, vec![0b1000_1001, 0b1010_0100, 0b0000_0000]);
    }

    #[test]
    fn rejects_bad_input() {
        let mut b = Vec::new();
        encode_vector(&[0, -1, 1, 4], &mut b);
        // Truncated.
        assert_eq!(
            decode_vector(&mut Reader::new(&b[..2]), 4),
            Err(VcodeError::Short)
        );
        // Padding bit set.
        let mut p = b.clone();
        p[2] |= 1;
        assert_eq!(
            decode_vector(&mut Reader::new(&p), 4),
            Err(VcodeError::Padding)
        );
        // A run of 40 zero bits then a one: out of range.
        let z = [0u8, 0, 0, 0, 0, 0x80, 0, 0];
        assert_eq!(
            decode_vector(&mut Reader::new(&z), 1),
            Err(VcodeError::Range)
        );
        // All zeros to the end: short.
        assert_eq!(
            decode_vector(&mut Reader::new(&[0u8; 3]), 1),
            Err(VcodeError::Short)
        );
        assert_eq!(decode_vector(&mut Reader::new(&[]), 0), Ok(vec![]));
    }
}
