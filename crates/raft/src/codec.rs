//! The on-disk record format: every value this crate stores in redb is sealed with the
//! manager's data encryption key (XChaCha20-Poly1305, see [`swarmd_crypto`]).
//!
//! redb checksums its own pages, but only verifies them on an integrity check; a plain read
//! trusts the file. Raft must never hand a bit-flipped entry to the state machine (every
//! replica would then diverge silently), and the store it replicates holds secrets that must
//! never be on disk in plaintext. An authenticated cipher answers both: each record is
//! verified on *every* read (the AEAD tag replaces the CRC-32C of format 1), and a mismatch
//! is an `InvalidData` error, never data.
//!
//! Layout: `[version: u8 = 2][nonce: 24][ciphertext of the JSON payload][tag: 16]`. The
//! associated data names the record's slot (table and key, see [`Slot`]), so a record copied
//! into another slot (an old vote over the new one, entry 7 stored as entry 8) fails too.
//!
//! Format 1 (plaintext JSON + CRC-32C, written before encryption at rest) is refused with an
//! error saying so: swarmd does not migrate a plaintext Raft log in place (it would leave the
//! old plaintext in redb's free pages); the manager has to rejoin (or `swarm init
//! --force-new-cluster` on a fresh data root) to get an encrypted copy from its peers.

use std::io;

use serde::Serialize;
use serde::de::DeserializeOwned;
use swarmd_crypto::DataKey;

/// Format 1: JSON + CRC-32C, plaintext. Only recognised to be refused clearly.
const FORMAT_V1_PLAINTEXT: u8 = 1;
/// Current record format: sealed JSON.
const FORMAT_V2_SEALED: u8 = 2;

/// Where a record lives: bound into its authentication tag.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Slot<'a> {
    Log(u64),
    Meta(&'a str),
    Snapshot(&'a str),
}

impl Slot<'_> {
    fn aad(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        match self {
            Slot::Log(i) => {
                out.extend_from_slice(b"swarmd/raft_log/");
                out.extend_from_slice(&i.to_be_bytes());
            }
            Slot::Meta(k) => {
                out.extend_from_slice(b"swarmd/raft_meta/");
                out.extend_from_slice(k.as_bytes());
            }
            Slot::Snapshot(k) => {
                out.extend_from_slice(b"swarmd/raft_snapshot/");
                out.extend_from_slice(k.as_bytes());
            }
        }
        out
    }
}

impl std::fmt::Display for Slot<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Slot::Log(i) => write!(f, "raft log entry {i}"),
            Slot::Meta(k) => write!(f, "raft meta {k}"),
            Slot::Snapshot(k) => write!(f, "snapshot {k}"),
        }
    }
}

/// Seals raw bytes as the record of `slot`.
pub(crate) fn seal(key: &DataKey, slot: Slot<'_>, payload: &[u8]) -> Vec<u8> {
    let sealed = key.seal(&slot.aad(), payload);
    let mut out = Vec::with_capacity(1 + sealed.len());
    out.push(FORMAT_V2_SEALED);
    out.extend_from_slice(&sealed);
    out
}

/// Verifies and decrypts the record of `slot`.
pub(crate) fn open(key: &DataKey, slot: Slot<'_>, record: &[u8]) -> io::Result<Vec<u8>> {
    match record.first() {
        None => Err(corrupt(format!("{slot}: empty record"))),
        Some(&FORMAT_V2_SEALED) => key
            .open(&slot.aad(), &record[1..])
            .map_err(|e| corrupt(format!("{slot}: {e}"))),
        Some(&FORMAT_V1_PLAINTEXT) => Err(corrupt(format!(
            "{slot}: stored without encryption at rest by an older swarmd; this version \
             refuses plaintext raft data (leave the swarm on this node and join again to get \
             an encrypted copy)"
        ))),
        Some(v) => Err(corrupt(format!("{slot}: unknown record format {v}"))),
    }
}

/// Serializes `value` as JSON and seals it.
pub(crate) fn encode<T: Serialize + ?Sized>(
    key: &DataKey,
    slot: Slot<'_>,
    value: &T,
) -> io::Result<Vec<u8>> {
    let payload = serde_json::to_vec(value).map_err(io::Error::other)?;
    Ok(seal(key, slot, &payload))
}

/// Verifies and deserializes a record written by [`encode`].
pub(crate) fn decode<T: DeserializeOwned>(
    key: &DataKey,
    slot: Slot<'_>,
    record: &[u8],
) -> io::Result<T> {
    let payload = open(key, slot, record)?;
    serde_json::from_slice(&payload).map_err(|e| corrupt(format!("{slot}: undecodable: {e}")))
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
    fn roundtrip_and_every_flipped_bit_is_detected() {
        let key = DataKey::generate();
        let rec = encode(&key, Slot::Log(3), &("hello", 42u64)).unwrap();
        assert!(!rec.windows(5).any(|w| w == b"hello"), "plaintext on disk");
        let back: (String, u64) = decode(&key, Slot::Log(3), &rec).unwrap();
        assert_eq!(back, ("hello".to_string(), 42));
        for byte in 0..rec.len() {
            for bit in 0..8 {
                let mut bad = rec.clone();
                bad[byte] ^= 1 << bit;
                let err = decode::<(String, u64)>(&key, Slot::Log(3), &bad).unwrap_err();
                assert_eq!(
                    err.kind(),
                    io::ErrorKind::InvalidData,
                    "byte {byte} bit {bit}"
                );
            }
        }
        assert!(decode::<(String, u64)>(&key, Slot::Log(3), &rec[..3]).is_err());
        assert!(decode::<(String, u64)>(&key, Slot::Log(3), &rec[..rec.len() - 1]).is_err());
        assert!(decode::<(String, u64)>(&key, Slot::Log(3), &[]).is_err());
    }

    #[test]
    fn a_record_moved_to_another_slot_or_read_with_another_key_is_refused() {
        let key = DataKey::generate();
        let rec = encode(&key, Slot::Log(7), &"x").unwrap();
        for slot in [Slot::Log(8), Slot::Meta("vote"), Slot::Snapshot("data")] {
            let err = decode::<String>(&key, slot, &rec).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{slot}");
        }
        let vote = encode(&key, Slot::Meta("vote"), &1u64).unwrap();
        assert!(decode::<u64>(&key, Slot::Meta("committed"), &vote).is_err());
        let other = DataKey::generate();
        let err = decode::<String>(&other, Slot::Log(7), &rec).unwrap_err();
        assert!(err.to_string().contains("wrong key"), "{err}");
    }

    #[test]
    fn plaintext_records_of_format_1_are_refused_with_a_reason() {
        let key = DataKey::generate();
        let mut v1 = vec![1u8, 0, 0, 0, 0];
        v1.extend_from_slice(b"\"hello\"");
        let err = decode::<String>(&key, Slot::Log(1), &v1).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("without encryption"), "{err}");
    }
}
