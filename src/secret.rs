//! The webhook secret: a shared string that a webhook URL must carry.
//!
//! Localtonet cannot sign requests or set headers; all it can do is call a URL. The secret
//! therefore travels in the URL, as its last path segment (`/webhook/<secret>`) or as
//! `?secret=<secret>`; senders that can set headers may use `Authorization: Bearer <secret>`.
//! It must be URL-safe so that it never needs encoding.

use std::fmt;
use std::path::Path;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Fewest characters a secret may have.
pub const MIN_LEN: usize = 16;
/// Most characters a secret may have.
pub const MAX_LEN: usize = 512;

/// A webhook secret. It is never printed: `Debug` and `Display` show `<secret>`.
#[derive(Clone)]
pub struct Secret {
    digest: [u8; 32],
}

impl Secret {
    /// Reads the secret from a file: its content without surrounding whitespace.
    pub fn load(path: &Path) -> Result<Secret, String> {
        let text = crate::config_file::read_text(path)
            .map_err(|e| format!("webhook secret file {}: {e}", path.display()))?;
        Secret::new(text.trim())
            .map_err(|reason| format!("webhook secret file {}: {reason}", path.display()))
    }

    /// Makes a secret from its text.
    pub fn new(text: &str) -> Result<Secret, String> {
        if text.len() < MIN_LEN || text.len() > MAX_LEN {
            return Err(format!(
                "the secret must be {MIN_LEN} to {MAX_LEN} characters long"
            ));
        }
        if !text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        {
            return Err("the secret may only contain A-Z a-z 0-9 and - . _ ~ (URL-safe)".into());
        }
        Ok(Secret {
            digest: Sha256::digest(text.as_bytes()).into(),
        })
    }

    /// Compares a candidate with the secret in time that does not depend on where they
    /// differ or on their lengths (both are hashed first).
    pub fn matches(&self, candidate: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(candidate.as_bytes()).into();
        self.digest.ct_eq(&digest).into()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "s3cr3t-value_for.tests~1234";

    #[test]
    fn matches_only_the_exact_secret() {
        let secret = Secret::new(SECRET).expect("valid");
        assert!(secret.matches(SECRET));
        assert!(!secret.matches(""));
        assert!(!secret.matches(&SECRET[1..]));
        assert!(!secret.matches(&format!("{SECRET}x")));
        assert!(!secret.matches(&SECRET.to_uppercase()));
    }

    #[test]
    fn short_or_url_unsafe_secrets_are_refused() {
        assert!(Secret::new("short").is_err());
        assert!(Secret::new("has a space in it, long enough").is_err());
        assert!(Secret::new("needs%20encoding-long-enough").is_err());
        assert!(Secret::new(&"x".repeat(MAX_LEN + 1)).is_err());
    }

    #[test]
    fn the_secret_is_never_printed() {
        let secret = Secret::new(SECRET).expect("valid");
        assert_eq!(format!("{secret:?}"), "<secret>");
    }

    #[test]
    fn file_content_is_trimmed_and_errors_do_not_quote_it() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("secret");
        std::fs::write(&path, format!("{SECRET}\n")).expect("write");
        assert!(Secret::load(&path).expect("valid").matches(SECRET));
        std::fs::write(&path, "short-secret\n").expect("write");
        let err = Secret::load(&path).expect_err("too short");
        assert!(!err.contains("short-secret"), "{err}");
    }
}
