//! Second factors, the pure part: TOTP (RFC 6238 via `totp-rs`: SHA-1, six
//! digits, 30-second steps, which every authenticator app supports),
//! recovery codes, and what a verified factor adds to a session's `amr`.

use ring::rand::{SecureRandom, SystemRandom};
use totp_rs::{Algorithm, TOTP};

pub const STEP_SECS: i64 = 30;
const DIGITS: usize = 6;
const SECRET_BYTES: usize = 20;
pub const RECOVERY_CODES: usize = 10;
/// The `acr` of a session proved with one factor, and with two.
pub const ACR_ONE_FACTOR: &str = "aal1";
pub const ACR_TWO_FACTORS: &str = "aal2";

fn totp(secret: Vec<u8>, account: &str, issuer: &str) -> anyhow::Result<TOTP> {
    // The otpauth label may not contain ':' (it separates issuer and account).
    let account = account.replace(':', "_");
    TOTP::new(
        Algorithm::SHA1,
        DIGITS,
        0,
        STEP_SECS as u64,
        secret,
        Some(issuer.replace(':', "_")),
        account,
    )
    .map_err(|e| anyhow::anyhow!("totp: {e}"))
}

pub fn new_secret() -> anyhow::Result<Vec<u8>> {
    let mut secret = vec![0u8; SECRET_BYTES];
    SystemRandom::new()
        .fill(&mut secret)
        .map_err(|_| anyhow::anyhow!("no randomness"))?;
    Ok(secret)
}

/// What enrolment shows once: the secret in base32, the `otpauth://` URI,
/// and a QR code of the URI as SVG.
pub struct Enrolment {
    pub secret_base32: String,
    pub otpauth_uri: String,
    pub qr_svg: String,
}

pub fn enrolment(secret: &[u8], account: &str, issuer: &str) -> anyhow::Result<Enrolment> {
    let t = totp(secret.to_vec(), account, issuer)?;
    let uri = t.get_url();
    let qr = qrcode::QrCode::new(uri.as_bytes())?
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .build();
    Ok(Enrolment {
        secret_base32: t.get_secret_base32(),
        otpauth_uri: uri,
        qr_svg: qr,
    })
}

/// The time step a code is valid for at `now` (Unix seconds): the current
/// step or the one before (a code typed as the step turned), never a
/// later one and never older. The caller must still refuse a step already
/// used.
pub fn matching_step(secret: &[u8], code: &str, now: i64) -> anyhow::Result<Option<i64>> {
    let code = code.trim();
    if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    let t = totp(secret.to_vec(), "x", "x")?;
    let current = now.div_euclid(STEP_SECS);
    for step in [current, current - 1] {
        let Ok(at) = u64::try_from(step * STEP_SECS) else {
            continue;
        };
        if constant_time_eq(t.generate(at).as_bytes(), code.as_bytes()) {
            return Ok(Some(step));
        }
    }
    Ok(None)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Ten fresh recovery codes, `xxxxx-xxxxx` (50 random bits of base32 each
/// half: 100 bits per code, out of reach of guessing), as shown to the user.
pub fn new_recovery_codes() -> anyhow::Result<Vec<String>> {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let rng = SystemRandom::new();
    let mut codes = Vec::with_capacity(RECOVERY_CODES);
    for _ in 0..RECOVERY_CODES {
        let mut bytes = [0u8; 20];
        rng.fill(&mut bytes)
            .map_err(|_| anyhow::anyhow!("no randomness"))?;
        let chars: String = bytes
            .iter()
            .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
            .collect();
        codes.push(format!("{}-{}", &chars[..10], &chars[10..]));
    }
    Ok(codes)
}

/// The stored form of a recovery code: case and separators do not matter.
pub fn recovery_code_hash(code: &str) -> String {
    let normal: String = code
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    crate::domain::tokens::refresh_token_hash(&format!("rc:{normal}"))
}

/// A session's `amr` after a second factor: the first factor (`pwd`,
/// `fed`) kept, then `otp` for a TOTP code, and `mfa`.
pub fn with_second_factor(amr: &str, factor: &str) -> String {
    let mut words: Vec<&str> = amr
        .split_whitespace()
        .filter(|w| !matches!(*w, "otp" | "mfa" | "rc" | "hwk" | "swk"))
        .collect();
    words.push(factor);
    words.push("mfa");
    words.join(" ")
}

pub fn acr_of(amr: &str) -> &'static str {
    if amr.split_whitespace().any(|w| w == "mfa") {
        ACR_TWO_FACTORS
    } else {
        ACR_ONE_FACTOR
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 6238 appendix B, SHA-1: the 20-byte ASCII secret "12345678901234567890".
    const RFC_SECRET: &[u8] = b"12345678901234567890";

    #[test]
    fn rfc6238_vectors_and_the_window() {
        // 59 s → 94287082 in 8 digits; the six-digit code is its last six.
        assert_eq!(
            matching_step(RFC_SECRET, "287082", 59).expect("ok"),
            Some(1)
        );
        // 1111111109 → 07081804.
        assert_eq!(
            matching_step(RFC_SECRET, "081804", 1_111_111_109).expect("ok"),
            Some(1_111_111_109 / 30)
        );
        // The previous step is still accepted; two steps back is not.
        assert_eq!(
            matching_step(RFC_SECRET, "287082", 60 + 29).expect("ok"),
            Some(1)
        );
        assert_eq!(matching_step(RFC_SECRET, "287082", 90).expect("ok"), None);
        // Nor a future step.
        assert_eq!(matching_step(RFC_SECRET, "287082", 29).expect("ok"), None);
        for junk in ["", "28708", "2870820", "28708x", " 287082 x"] {
            assert_eq!(
                matching_step(RFC_SECRET, junk, 59).expect("ok"),
                None,
                "{junk}"
            );
        }
    }

    #[test]
    fn recovery_codes_and_amr() {
        let codes = new_recovery_codes().expect("codes");
        assert_eq!(codes.len(), 10);
        assert_eq!(codes[0].len(), 21);
        assert_eq!(
            recovery_code_hash(&codes[0]),
            recovery_code_hash(&codes[0].to_uppercase().replace('-', " "))
        );
        assert_ne!(recovery_code_hash(&codes[0]), recovery_code_hash(&codes[1]));
        assert_eq!(with_second_factor("pwd", "otp"), "pwd otp mfa");
        assert_eq!(with_second_factor("fed otp mfa", "rc"), "fed rc mfa");
        assert_eq!(with_second_factor("pwd hwk mfa", "hwk"), "pwd hwk mfa");
        assert_eq!(acr_of("pwd otp mfa"), "aal2");
        assert_eq!(acr_of("pwd"), "aal1");
    }
}
