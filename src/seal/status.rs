//! W3C Bitstring Status Lists: one bit per sealed credential, set when it is revoked (or
//! suspended, in a list of that purpose), published as a multibase base64url GZIP of the bits so
//! a verifier learns one credential's status by fetching the list, not by asking about it.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use std::io::{Read as _, Write as _};

/// The fewest bits a list has (16 KiB), so that a list does not tell how many credentials the
/// hub has sealed, nor which few are revoked (herd privacy).
pub const MIN_BITS: usize = 16 * 1024 * 8;

/// Largest list read back: 16 MiB of bits, far beyond what one list holds.
const MAX_BYTES: u64 = 16 * 1024 * 1024;

/// A status list's bits. Bit 0 is the first byte's most significant bit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusList {
    bytes: Vec<u8>,
}

/// Why an `encodedList` cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusListError {
    #[error("encodedList is not multibase base64url (it starts with `u`)")]
    Multibase,
    #[error("encodedList is not base64url: {0}")]
    Base64(String),
    #[error("encodedList is not GZIP, or it is larger than {MAX_BYTES} bytes: {0}")]
    Gzip(String),
    #[error("the list has {0} bits, fewer than the {MIN_BITS} a status list has at least")]
    Short(usize),
}

impl StatusList {
    /// A list of at least `bits` bits (and never fewer than [`MIN_BITS`]), all clear.
    pub fn new(bits: usize) -> StatusList {
        StatusList {
            bytes: vec![0; bits.max(MIN_BITS).div_ceil(8)],
        }
    }

    /// How many bits it holds.
    pub fn len(&self) -> usize {
        self.bytes.len() * 8
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The bit at `index`; beyond the list, clear.
    pub fn get(&self, index: usize) -> bool {
        self.bytes
            .get(index / 8)
            .is_some_and(|byte| byte & (0x80 >> (index % 8)) != 0)
    }

    /// Sets or clears the bit at `index`, growing the list if it is beyond it.
    pub fn set(&mut self, index: usize, value: bool) {
        if index / 8 >= self.bytes.len() {
            self.bytes.resize(index / 8 + 1, 0);
        }
        let mask = 0x80 >> (index % 8);
        if value {
            self.bytes[index / 8] |= mask;
        } else {
            self.bytes[index / 8] &= !mask;
        }
    }

    /// The `encodedList` of a `BitstringStatusList`: `u` + base64url (no padding) of the GZIP
    /// of the bits.
    pub fn encoded(&self) -> String {
        let mut gzip = GzEncoder::new(Vec::new(), Compression::default());
        // Writing to memory does not fail.
        let _ = gzip.write_all(&self.bytes);
        let compressed = gzip.finish().unwrap_or_default();
        format!("u{}", URL_SAFE_NO_PAD.encode(compressed))
    }

    /// Reads an `encodedList`.
    pub fn decode(encoded: &str) -> Result<StatusList, StatusListError> {
        let body = encoded
            .strip_prefix('u')
            .ok_or(StatusListError::Multibase)?;
        let compressed = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|e| StatusListError::Base64(e.to_string()))?;
        let mut bytes = Vec::new();
        GzDecoder::new(compressed.as_slice())
            .take(MAX_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| StatusListError::Gzip(e.to_string()))?;
        if bytes.len() as u64 > MAX_BYTES {
            return Err(StatusListError::Gzip("too large".into()));
        }
        if bytes.len() * 8 < MIN_BITS {
            return Err(StatusListError::Short(bytes.len() * 8));
        }
        Ok(StatusList { bytes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_are_numbered_from_the_first_bytes_most_significant_bit() {
        let mut list = StatusList::new(0);
        assert_eq!(list.len(), MIN_BITS);
        list.set(0, true);
        list.set(9, true);
        assert_eq!(&list.bytes[..2], &[0b1000_0000, 0b0100_0000]);
        assert!(list.get(0) && list.get(9) && !list.get(1) && !list.get(MIN_BITS + 5));
        list.set(0, false);
        assert!(!list.get(0));
        list.set(MIN_BITS + 3, true);
        assert!(list.get(MIN_BITS + 3));
        assert_eq!(list.len(), MIN_BITS + 8);
    }

    #[test]
    fn an_encoded_list_reads_back_and_bad_ones_are_named() {
        let mut list = StatusList::new(0);
        for i in [3, 94_567, 131_071] {
            list.set(i, true);
        }
        let encoded = list.encoded();
        assert!(
            encoded.starts_with("uH4sI"),
            "GZIP's magic, base64url: {encoded}"
        );
        // An all-clear 16 KiB list compresses to a few dozen bytes.
        assert!(StatusList::new(0).encoded().len() < 200);
        assert_eq!(StatusList::decode(&encoded), Ok(list));
        assert_eq!(StatusList::decode("zabc"), Err(StatusListError::Multibase));
        assert!(matches!(
            StatusList::decode("u!!"),
            Err(StatusListError::Base64(_))
        ));
        assert!(matches!(
            StatusList::decode("uAAAA"),
            Err(StatusListError::Gzip(_))
        ));
        let mut short = GzEncoder::new(Vec::new(), Compression::default());
        short.write_all(&[0; 10]).unwrap();
        let short = format!("u{}", URL_SAFE_NO_PAD.encode(short.finish().unwrap()));
        assert_eq!(StatusList::decode(&short), Err(StatusListError::Short(80)));
    }
}
