//! Fingerprints: how an authtoken is shown without revealing it.
//!
//! A fingerprint is the first 64 bits of the token's SHA-256, as 16 lower-case hex digits.
//! It is stable (the same token always gives the same fingerprint, on every machine), reveals
//! no part of the token, and collides by chance only among billions of tokens.
//! `localtonet-exporter fingerprint <token>` prints it.

use sha2::{Digest, Sha256};

/// Number of hex digits in a fingerprint.
pub const LEN: usize = 16;

/// Returns the fingerprint of `token`.
pub fn of(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut out = String::with_capacity(LEN);
    for byte in &digest[..LEN / 2] {
        out.push(char::from_digit(u32::from(byte >> 4), 16).unwrap_or('0'));
        out.push(char::from_digit(u32::from(byte & 0xf), 16).unwrap_or('0'));
    }
    out
}

/// True when `s` has the form of a fingerprint (16 lower-case hex digits).
pub fn looks_like(s: &str) -> bool {
    s.len() == LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_sha256_prefix_in_hex() {
        // sha256("9xknivVmUWwu1dqBOHRybM78") starts with these 8 bytes (checked with sha256sum).
        assert_eq!(of("9xknivVmUWwu1dqBOHRybM78"), EXPECTED_SAMPLE);
        assert!(looks_like(&of("anything")));
    }

    #[test]
    fn fingerprint_reveals_no_part_of_the_token() {
        let token = "9xknivVmUWwu1dqBOHRybM78";
        let fp = of(token);
        for window in token.as_bytes().windows(4) {
            let part = std::str::from_utf8(window).expect("ascii");
            assert!(!fp.contains(part), "{part} leaked into {fp}");
        }
    }

    const EXPECTED_SAMPLE: &str = "3b8f0e6747ce707b";
}
