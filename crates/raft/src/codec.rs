//! The on-disk record format: every value this crate stores in redb is framed with a format
//! version and a CRC-32C of its payload.
//!
//! redb checksums its own pages, but only verifies them on an integrity check; a plain read
//! trusts the file. Raft must never hand a bit-flipped entry to the state machine (every
//! replica would then diverge silently), so each record carries its own checksum that is
//! verified on *every* read, and a mismatch is an `InvalidData` error, never data.
//!
//! Layout: `[version: u8][crc32c(payload): u32 LE][payload: JSON]`. The version byte leaves
//! room for a later format (e.g. encryption at rest) without guessing.

use std::io;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Current record format: JSON payload, CRC-32C.
const FORMAT_V1: u8 = 1;
const HEADER_LEN: usize = 5;

/// CRC-32C (Castagnoli) lookup table, built at compile time.
const CRC32C_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// CRC-32C of `data`. Hand-rolled (a table and a loop) so the crate needs no checksum
/// dependency; it is not on a hot path compared with the fsync that follows every write.
pub(crate) fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc = CRC32C_TABLE[((crc ^ b as u32) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

/// Frames raw bytes as a record.
pub(crate) fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.push(FORMAT_V1);
    out.extend_from_slice(&crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Verifies a record's header and checksum and returns its payload. `what` names the record in
/// the error (e.g. `log entry 42`).
pub(crate) fn unframe<'a>(record: &'a [u8], what: &dyn std::fmt::Display) -> io::Result<&'a [u8]> {
    if record.len() < HEADER_LEN {
        return Err(corrupt(format!(
            "{what}: record of {} bytes is shorter than its header",
            record.len()
        )));
    }
    if record[0] != FORMAT_V1 {
        return Err(corrupt(format!(
            "{what}: unknown record format {}",
            record[0]
        )));
    }
    let stored = u32::from_le_bytes([record[1], record[2], record[3], record[4]]);
    let payload = &record[HEADER_LEN..];
    let actual = crc32c(payload);
    if stored != actual {
        return Err(corrupt(format!(
            "{what}: checksum mismatch (stored {stored:#010x}, computed {actual:#010x})"
        )));
    }
    Ok(payload)
}

/// Serializes `value` as JSON and frames it.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> io::Result<Vec<u8>> {
    let payload = serde_json::to_vec(value).map_err(io::Error::other)?;
    Ok(frame(&payload))
}

/// Verifies and deserializes a record written by [`encode`].
pub(crate) fn decode<T: DeserializeOwned>(
    record: &[u8],
    what: &dyn std::fmt::Display,
) -> io::Result<T> {
    let payload = unframe(record, what)?;
    serde_json::from_slice(payload).map_err(|e| corrupt(format!("{what}: undecodable: {e}")))
}

/// The error for data that failed verification. `InvalidData` is how callers (and
/// [`crate::RaftError::Corrupt`]) tell corruption from an I/O failure.
pub(crate) fn corrupt(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn roundtrip_and_every_flipped_bit_is_detected() {
        let rec = encode(&("hello", 42u64)).unwrap();
        let back: (String, u64) = decode(&rec, &"test").unwrap();
        assert_eq!(back, ("hello".to_string(), 42));
        for byte in 0..rec.len() {
            for bit in 0..8 {
                let mut bad = rec.clone();
                bad[byte] ^= 1 << bit;
                let err = decode::<(String, u64)>(&bad, &"test").unwrap_err();
                assert_eq!(
                    err.kind(),
                    io::ErrorKind::InvalidData,
                    "byte {byte} bit {bit}"
                );
            }
        }
        assert!(decode::<(String, u64)>(&rec[..3], &"short").is_err());
    }
}
