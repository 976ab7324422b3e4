//! Object IDs in Docker's swarm format: 25 lowercase base-36 characters.

use rand::Rng;

/// Length of a swarm object ID (swarmkit's `identity.NewID`).
pub const ID_LEN: usize = 25;

/// A fresh random object ID. Called when a change is proposed, never inside apply.
pub fn new_id() -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    (0..ID_LEN)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// A 64-hex-character ID, as the engine uses for containers and as swarm uses for secrets'
/// digests in some places.
pub fn new_hex_id() -> String {
    let mut rng = rand::rng();
    (0..32)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_swarm_shape() {
        let a = new_id();
        assert_eq!(a.len(), ID_LEN);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase())
        );
        assert_ne!(a, new_id());
        assert_eq!(new_hex_id().len(), 64);
    }
}
