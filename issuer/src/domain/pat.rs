//! Personal access tokens' format: `dmp_`, 30 random base62 characters
//! (about 178 bits), then a 6-character base62 CRC-32 of those 30. The
//! prefix lets secret scanners find a leaked one and the checksum lets
//! them (and us) tell a real one from a look-alike without a lookup, as
//! GitHub's `ghp_` tokens do.

use ring::rand::{SecureRandom, SystemRandom};

pub const PREFIX: &str = "dmp_";
/// The `client_id` of a personal access token's session and of the access
/// tokens exchanged for it (no client may register it).
pub const CLIENT_ID: &str = "personal-access-token";
/// Token exchange's `subject_token_type` (RFC 8693 §3 lets a deployment
/// name its own) for one of these.
pub const TOKEN_TYPE: &str = "urn:devmentor:params:oauth:token-type:personal_access_token";
/// Live tokens a user may hold at once.
pub const MAX_LIVE: i64 = 50;
const RANDOM_LEN: usize = 30;
const CHECKSUM_LEN: usize = 6;
/// `dmp_` and 36 characters.
pub const LEN: usize = 4 + RANDOM_LEN + CHECKSUM_LEN;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A new token.
pub fn new_token() -> anyhow::Result<String> {
    let rng = SystemRandom::new();
    let mut body = String::with_capacity(RANDOM_LEN);
    let mut buf = [0u8; 64];
    while body.len() < RANDOM_LEN {
        rng.fill(&mut buf)
            .map_err(|_| anyhow::anyhow!("no randomness"))?;
        // 248 = 4 × 62: bytes above it are dropped, so every character is
        // equally likely.
        for b in buf.iter().filter(|b| **b < 248) {
            if body.len() == RANDOM_LEN {
                break;
            }
            body.push(BASE62[usize::from(*b % 62)] as char);
        }
    }
    Ok(format!("{PREFIX}{body}{}", checksum(&body)))
}

/// Whether `token` has the shape and checksum of one of ours.
pub fn well_formed(token: &str) -> bool {
    let Some(rest) = token.strip_prefix(PREFIX) else {
        return false;
    };
    if rest.len() != RANDOM_LEN + CHECKSUM_LEN || !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return false;
    }
    let (body, sum) = rest.split_at(RANDOM_LEN);
    checksum(body) == sum
}

/// CRC-32 (IEEE) of `body` in base62, left-padded to 6 characters.
fn checksum(body: &str) -> String {
    let mut n = crc32(body.as_bytes());
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out.iter().map(|b| *b as char).collect()
}

/// Bitwise CRC-32 (IEEE 802.3, reflected, as zlib's): six lines instead of
/// a crate for 30 bytes per token.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for b in bytes {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_zlib() {
        // zlib.crc32(b"123456789") == 0xCBF43926, the standard check value.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn new_tokens_are_well_formed_and_differ() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_eq!(a.len(), LEN);
        assert!(a.starts_with("dmp_"));
        assert!(well_formed(&a) && well_formed(&b));
        assert_ne!(a, b);
    }

    #[test]
    fn a_changed_character_fails_the_checksum() {
        let t = new_token().unwrap();
        let mut bytes = t.clone().into_bytes();
        bytes[10] = if bytes[10] == b'a' { b'b' } else { b'a' };
        assert!(!well_formed(&String::from_utf8(bytes).unwrap()));
        assert!(!well_formed(&t[..LEN - 1]));
        assert!(!well_formed(&t.replace("dmp_", "dmx_")));
        assert!(!well_formed(&format!("{t}a")));
    }
}
