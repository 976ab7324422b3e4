//! Random names for services created without `--name`, in Docker's `adjective_surname`
//! style.

use rand::seq::IndexedRandom;

const LEFT: &[&str] = &[
    "admiring",
    "brave",
    "clever",
    "dazzling",
    "eager",
    "festive",
    "gallant",
    "happy",
    "inspiring",
    "jolly",
    "keen",
    "loving",
    "modest",
    "nifty",
    "optimistic",
    "peaceful",
    "quirky",
    "relaxed",
    "sharp",
    "tender",
    "upbeat",
    "vibrant",
    "wizardly",
    "youthful",
    "zealous",
];
const RIGHT: &[&str] = &[
    "albattani",
    "babbage",
    "curie",
    "darwin",
    "euclid",
    "fermi",
    "galileo",
    "hopper",
    "lovelace",
    "jang",
    "kepler",
    "lamport",
    "mccarthy",
    "noether",
    "ritchie",
    "shannon",
    "thompson",
    "turing",
    "vaughan",
    "wozniak",
    "yonath",
    "zhukovsky",
];

/// A name like `brave_turing`.
pub fn random_name() -> String {
    let mut rng = rand::rng();
    format!(
        "{}_{}",
        LEFT.choose(&mut rng).copied().unwrap_or("swarm"),
        RIGHT.choose(&mut rng).copied().unwrap_or("service")
    )
}
