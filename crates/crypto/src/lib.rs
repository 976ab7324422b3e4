//! Encryption at rest for swarmd: how a record is sealed before it touches a disk, and the
//! keys that seal it.
//!
//! - [`DataKey`]: a random 256-bit key (a manager's Raft DEK, a node's agent-db key, or a
//!   key-encryption key). [`DataKey::seal`] encrypts one record with XChaCha20-Poly1305 under
//!   a fresh random 24-byte nonce; `aad` (associated data) binds the record to where it is
//!   stored (table and key), so a record copied to another slot fails to open instead of
//!   being read as that slot's data. [`DataKey::open`] never returns unauthenticated bytes:
//!   a flipped bit, a truncation, a swapped record or a wrong key is an error.
//! - [`UnlockKey`]: the swarm's autolock key, shown to the user as `SWMKEY-1-<base64>`
//!   (Docker's text form). Its 32 bytes are used directly as the key-encryption key that
//!   wraps a manager's DEK and TLS key; it is never written to a disk by swarmd.
//!
//! Sealed layout: `[nonce: 24][ciphertext][tag: 16]`.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{Key, KeyInit, XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

/// Key length in bytes (XChaCha20-Poly1305 keys are 256-bit).
pub const KEY_LEN: usize = 32;
/// Nonce length in bytes; random nonces of this size never collide in practice.
pub const NONCE_LEN: usize = 24;
/// Authentication tag length in bytes.
pub const TAG_LEN: usize = 16;
/// What a sealed record adds to its plaintext.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// Docker's prefix of a human-readable unlock key.
pub const UNLOCK_KEY_PREFIX: &str = "SWMKEY-1-";

/// Why a record or key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The record is shorter than a nonce and a tag: truncated, or never sealed.
    #[error("sealed record of {0} bytes is too short")]
    TooShort(usize),
    /// Authentication failed: the record was altered, moved to another slot, or the key is
    /// not the one that sealed it. The three cannot be told apart, by design.
    #[error("sealed record failed authentication (wrong key, or the data was altered)")]
    Unauthentic,
    /// Docker's wording for an unlock key that does not parse.
    #[error("invalid key string")]
    InvalidKeyString,
    /// A stored key that is not 32 bytes of base64.
    #[error("invalid data key: {0}")]
    InvalidKey(String),
}

/// A 256-bit symmetric key, wiped from memory on drop and never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct DataKey(Zeroizing<[u8; KEY_LEN]>);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

impl DataKey {
    /// A fresh random key (thread-local CSPRNG, seeded from the OS).
    pub fn generate() -> DataKey {
        DataKey(Zeroizing::new(rand::random()))
    }

    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> DataKey {
        DataKey(Zeroizing::new(bytes))
    }

    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// Standard base64, for key files.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(*self.0)
    }

    pub fn from_base64(text: &str) -> Result<DataKey, CryptoError> {
        let bytes = Zeroizing::new(
            STANDARD
                .decode(text.trim())
                .map_err(|e| CryptoError::InvalidKey(e.to_string()))?,
        );
        let arr: [u8; KEY_LEN] = bytes.as_slice().try_into().map_err(|_| {
            CryptoError::InvalidKey(format!("{} bytes, want {KEY_LEN}", bytes.len()))
        })?;
        Ok(DataKey::from_bytes(arr))
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(Key::from_slice(self.0.as_slice()))
    }

    /// Encrypts `plaintext` under a fresh random nonce, authenticating `aad` with it.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let ct = self
            .cipher()
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            // Only fails for plaintexts beyond 2^38 bytes; records are far smaller.
            .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory records");
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Decrypts a record sealed by [`DataKey::seal`] with the same `aad`; anything else is
    /// an error, never data.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < OVERHEAD {
            return Err(CryptoError::TooShort(sealed.len()));
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        self.cipher()
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
            .map_err(|_| CryptoError::Unauthentic)
    }
}

/// The swarm's autolock key. Managers' DEKs and TLS keys are wrapped by it; users keep it
/// (`docker swarm unlock-key`) and give it back after a restart (`docker swarm unlock`).
#[derive(Clone, PartialEq, Eq)]
pub struct UnlockKey(DataKey);

impl std::fmt::Debug for UnlockKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UnlockKey(<redacted>)")
    }
}

impl UnlockKey {
    pub fn generate() -> UnlockKey {
        UnlockKey(DataKey::generate())
    }

    /// Parses Docker's `SWMKEY-1-<base64>` (unpadded, as swarmkit writes it; padding is
    /// accepted too). Anything else is Docker's "invalid key string".
    pub fn parse(text: &str) -> Result<UnlockKey, CryptoError> {
        let b64 = text
            .trim()
            .strip_prefix(UNLOCK_KEY_PREFIX)
            .ok_or(CryptoError::InvalidKeyString)?;
        let bytes = Zeroizing::new(
            STANDARD_NO_PAD
                .decode(b64.trim_end_matches('='))
                .map_err(|_| CryptoError::InvalidKeyString)?,
        );
        let arr: [u8; KEY_LEN] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::InvalidKeyString)?;
        Ok(UnlockKey(DataKey::from_bytes(arr)))
    }

    /// Docker's text form, `SWMKEY-1-` and unpadded base64.
    pub fn to_human(&self) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "{UNLOCK_KEY_PREFIX}{}",
            STANDARD_NO_PAD.encode(self.0.as_bytes())
        ))
    }

    /// The key-encryption key: the unlock key's own 32 random bytes.
    pub fn kek(&self) -> &DataKey {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let k = DataKey::generate();
        let sealed = k.seal(b"raft_log/1", b"secret value");
        assert_eq!(sealed.len(), b"secret value".len() + OVERHEAD);
        assert_eq!(k.open(b"raft_log/1", &sealed).unwrap(), b"secret value");
        // Fresh nonce each time: sealing twice never gives the same bytes.
        assert_ne!(sealed, k.seal(b"raft_log/1", b"secret value"));
        // The plaintext does not appear in the sealed record.
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let k = DataKey::generate();
        let sealed = k.seal(b"ad", b"hello world");
        for byte in 0..sealed.len() {
            for bit in 0..8 {
                let mut bad = sealed.clone();
                bad[byte] ^= 1 << bit;
                assert_eq!(
                    k.open(b"ad", &bad),
                    Err(CryptoError::Unauthentic),
                    "byte {byte} bit {bit}"
                );
            }
        }
    }

    #[test]
    fn swapped_truncated_and_wrong_key_are_refused() {
        let k = DataKey::generate();
        let a = k.seal(b"raft_log/1", b"one");
        // Moved to another slot: the associated data no longer matches.
        assert_eq!(k.open(b"raft_log/2", &a), Err(CryptoError::Unauthentic));
        // Truncated: short of the tag, or short of everything.
        assert_eq!(
            k.open(b"raft_log/1", &a[..a.len() - 1]),
            Err(CryptoError::Unauthentic)
        );
        assert_eq!(
            k.open(b"raft_log/1", &a[..10]),
            Err(CryptoError::TooShort(10))
        );
        assert_eq!(k.open(b"raft_log/1", &[]), Err(CryptoError::TooShort(0)));
        // Another key.
        assert_eq!(
            DataKey::generate().open(b"raft_log/1", &a),
            Err(CryptoError::Unauthentic)
        );
    }

    #[test]
    fn unlock_keys_parse_like_docker() {
        let k = UnlockKey::generate();
        let text = k.to_human();
        assert!(text.starts_with("SWMKEY-1-"));
        assert_eq!(text.len(), "SWMKEY-1-".len() + 43);
        assert_eq!(UnlockKey::parse(&text).unwrap(), k);
        assert_eq!(UnlockKey::parse(&format!("  {}\n", *text)).unwrap(), k);
        for bad in [
            "",
            "SWMKEY-1-",
            "SWMKEY-1-x",
            "SWMKEY-2-abc",
            "hello",
            "SWMKEY-1-!!!",
        ] {
            assert_eq!(
                UnlockKey::parse(bad),
                Err(CryptoError::InvalidKeyString),
                "{bad}"
            );
        }
        assert!(!format!("{k:?}").contains(&text[9..]));
    }

    #[test]
    fn data_keys_round_trip_through_base64() {
        let k = DataKey::generate();
        assert_eq!(DataKey::from_base64(&k.to_base64()).unwrap(), k);
        assert!(DataKey::from_base64("c2hvcnQ=").is_err());
        assert!(DataKey::from_base64("not base64").is_err());
        assert_eq!(format!("{k:?}"), "DataKey(<redacted>)");
    }

    proptest! {
        #[test]
        fn any_record_round_trips_and_any_change_is_refused(
            msg in proptest::collection::vec(any::<u8>(), 0..512),
            aad in proptest::collection::vec(any::<u8>(), 0..32),
            flip in any::<prop::sample::Index>(),
        ) {
            let k = DataKey::generate();
            let sealed = k.seal(&aad, &msg);
            prop_assert_eq!(k.open(&aad, &sealed).unwrap(), msg);
            let mut bad = sealed.clone();
            let i = flip.index(bad.len());
            bad[i] ^= 0x80;
            prop_assert!(k.open(&aad, &bad).is_err());
        }
    }
}
