//! Finding a secret in files and logs in every form it could have been written in.
//!
//! A test that proves "no plaintext secret on disk" by grepping for the secret as a string
//! cannot fail for data serialized some other way: serde_json writes a `Vec<u8>` as an
//! array of numbers, other encoders use base64 or hex. [`find_secret`] looks for all of
//! them, so removing encryption makes such a test fail whichever serializer is in use:
//!
//! - the raw bytes;
//! - hex, lower and upper case;
//! - base64, standard and URL-safe alphabets, padded or not, at each of the three
//!   alignments the secret can have inside a longer encoded value (only the characters
//!   that depend on nothing but the secret's own bits are searched for);
//! - a JSON (or any comma-separated) array of its byte values, whatever whitespace lies
//!   between the numbers (`[115,51]`, `[115, 51]`, pretty-printed one per line).

use std::path::{Path, PathBuf};

/// The shortest secret worth searching for: shorter ones would be found by chance (and
/// their base64 cores would be a character or two).
pub const MIN_SECRET_LEN: usize = 8;

const BASE64_STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const BASE64_URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The byte strings `secret` turns into under each encoding, with the encoding's name.
pub fn byte_forms(secret: &[u8]) -> Vec<(String, Vec<u8>)> {
    assert!(
        secret.len() >= MIN_SECRET_LEN,
        "a secret to search for needs at least {MIN_SECRET_LEN} bytes"
    );
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let mut forms = vec![
        ("raw".to_string(), secret.to_vec()),
        ("hex".to_string(), hex.clone().into_bytes()),
        ("HEX".to_string(), hex.to_uppercase().into_bytes()),
    ];
    for (name, alphabet) in [("base64", BASE64_STD), ("base64url", BASE64_URL)] {
        for offset in 0..3 {
            forms.push((
                format!("{name} at offset {offset}"),
                base64_core(secret, offset, alphabet),
            ));
        }
    }
    forms
}

/// The base64 characters of `secret` when it starts `offset` bytes (mod 3) into the
/// encoded value: those computed from the secret's bits alone, so they appear whatever
/// surrounds it (and with or without padding).
fn base64_core(secret: &[u8], offset: usize, alphabet: &[u8; 64]) -> Vec<u8> {
    let mut bytes = vec![0u8; offset];
    bytes.extend_from_slice(secret);
    let bits = |i: usize| (bytes[i / 8] >> (7 - i % 8)) & 1;
    // Character i covers bits [6i, 6i + 6); keep those inside [8·offset, 8·len).
    let first = (8 * offset).div_ceil(6);
    let end = 8 * bytes.len() / 6;
    (first..end)
        .map(|c| {
            let v = (0..6).fold(0usize, |v, b| (v << 1) | usize::from(bits(6 * c + b)));
            alphabet[v]
        })
        .collect()
}

/// Whether `haystack` holds the byte values of `secret` as a comma-separated list of
/// decimal numbers, with any whitespace around the commas.
fn contains_number_list(haystack: &[u8], secret: &[u8]) -> bool {
    let number_at = |mut i: usize| -> Option<(u32, usize)> {
        let start = i;
        let mut v: u32 = 0;
        while i < haystack.len() && haystack[i].is_ascii_digit() && i - start < 4 {
            v = v * 10 + u32::from(haystack[i] - b'0');
            i += 1;
        }
        let whole = i > start && !haystack.get(i).is_some_and(u8::is_ascii_digit);
        whole.then_some((v, i))
    };
    let skip_space = |mut i: usize| {
        while haystack.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        i
    };
    (0..haystack.len()).any(|start| {
        if start > 0 && haystack[start - 1].is_ascii_digit() {
            return false;
        }
        let mut i = start;
        for (n, &b) in secret.iter().enumerate() {
            if n > 0 {
                i = skip_space(i);
                if haystack.get(i) != Some(&b',') {
                    return false;
                }
                i = skip_space(i + 1);
            }
            match number_at(i) {
                Some((v, next)) if v == u32::from(b) => i = next,
                _ => return false,
            }
        }
        true
    })
}

/// The name of the first encoding of `secret` found in `haystack`, if any.
pub fn find_secret(haystack: &[u8], secret: &[u8]) -> Option<String> {
    let found = byte_forms(secret).into_iter().find(|(_, needle)| {
        haystack
            .windows(needle.len())
            .any(|w| w == needle.as_slice())
    });
    if let Some((name, _)) = found {
        return Some(name);
    }
    contains_number_list(haystack, secret).then(|| "number array".to_string())
}

/// Every regular file under `dir` (symlinks not followed) holding `secret` in any form,
/// with the form found. Unreadable files fail the search rather than pass it.
pub fn find_secret_in_tree(dir: &Path, secret: &[u8]) -> Vec<(PathBuf, String)> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let entries = std::fs::read_dir(&d).unwrap_or_else(|e| panic!("reading {d:?}: {e}"));
        for entry in entries {
            let entry = entry.unwrap_or_else(|e| panic!("reading {d:?}: {e}"));
            let path = entry.path();
            let kind = entry
                .file_type()
                .unwrap_or_else(|e| panic!("{path:?}: {e}"));
            if kind.is_dir() {
                todo.push(path);
            } else if kind.is_file() {
                let data = match std::fs::read(&path) {
                    Ok(d) => d,
                    // Removed between listing and reading (a daemon still running).
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => panic!("reading {path:?}: {e}"),
                };
                if let Some(form) = find_secret(&data, secret) {
                    found.push((path, form));
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"s3cr3t~~~???-atrest-1";

    /// Encodings made by other tools (Python's base64/json, `xxd -p`), with the secret at
    /// every alignment and inside longer values.
    #[test]
    fn finds_the_secret_in_every_encoding() {
        for (haystack, want) in [
            ("...s3cr3t~~~???-atrest-1...", "raw"),
            ("0x7333637233747e7e7e3f3f3f2d6174726573742d31", "hex"),
            ("X'7333637233747E7E7E3F3F3F2D6174726573742D31'", "HEX"),
            // base64("s3cr3t~~~???-atrest-1"), padded or not.
            ("\"czNjcjN0fn5+Pz8/LWF0cmVzdC0x\"", "base64 at offset 0"),
            // base64("x" + secret + "!tail")
            ("eHMzY3IzdH5+fj8/Py1hdHJlc3QtMSF0YWls", "base64 at offset 1"),
            // urlsafe_b64("xy" + secret)
            ("eHlzM2NyM3R-fn4_Pz8tYXRyZXN0LTE=", "base64url at offset 2"),
            ("czNjcjN0fn5-Pz8_LWF0cmVzdC0x", "base64url at offset 0"),
            // json.dumps(list(b"{" + secret + b"}"))
            (
                "[123, 115, 51, 99, 114, 51, 116, 126, 126, 126, 63, 63, 63, 45, 97, 116, 114, \
                 101, 115, 116, 45, 49, 125]",
                "number array",
            ),
            (
                "{\"data\":[115,51,99,114,51,116,126,126,126,63,63,63,45,97,116,114,101,115,116,\
                 45,49]}",
                "number array",
            ),
        ] {
            assert_eq!(
                find_secret(haystack.as_bytes(), SECRET).as_deref(),
                Some(want),
                "{haystack}"
            );
        }
        // serde_json's pretty printer: one number per line.
        let pretty = format!(
            "{{\n  \"data\": [\n    {}\n  ]\n}}",
            SECRET
                .iter()
                .map(u8::to_string)
                .collect::<Vec<_>>()
                .join(",\n    ")
        );
        assert_eq!(
            find_secret(pretty.as_bytes(), SECRET).as_deref(),
            Some("number array")
        );
    }

    #[test]
    fn near_misses_are_not_the_secret() {
        for haystack in [
            // Another secret, in the same forms.
            "s3cr3t~~~???-atrest-2 czNjcjN0fn5+Pz8/LWF0cmVzdC0y 7333637233747e7e7e3f3f3f2d6174726573742d32",
            // The numbers, one changed ("1115" is not 115), and a list cut short.
            "[1115,51,99,114,51,116,126,126,126,63,63,63,45,97,116,114,101,115,116,45,49]",
            "[115,51,99,114,51,116,126,126,126,63,63,63,45,97,116,114,101,115,116,45]",
            "",
        ] {
            assert_eq!(find_secret(haystack.as_bytes(), SECRET), None, "{haystack}");
        }
    }

    #[test]
    fn searches_every_file_of_a_tree() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("clean"), b"nothing here").unwrap();
        std::fs::write(dir.path().join("a/b/raft.db"), b"\x00\x01[115,51,99,114,51,116,126,126,126,63,63,63,45,97,116,114,101,115,116,45,49]\xff").unwrap();
        let found = find_secret_in_tree(dir.path(), SECRET);
        assert_eq!(
            found,
            vec![(dir.path().join("a/b/raft.db"), "number array".to_string())]
        );
    }
}
