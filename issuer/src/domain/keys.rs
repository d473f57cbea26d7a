//! Signing keys: generation, encryption at rest under the key-encryption key
//! (KEK), and the in-memory keyring that signs tokens and serves the JWKS.

use std::path::Path;

use anyhow::{anyhow, bail, Context};
use auth_types::jws::b64url_encode;
use auth_types::{Jwk, SigningAlg};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
    RSA_PKCS1_SHA256,
};

/// Format tag of encrypted private keys: AES-256-GCM, random 96-bit nonce,
/// the kid as associated data (a ciphertext cannot be moved to another kid).
const ENC_V1: u8 = 1;

pub struct Kek {
    key: LessSafeKey,
}

impl Kek {
    pub fn from_bytes(bytes: &[u8]) -> anyhow::Result<Self> {
        let unbound =
            UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| anyhow!("KEK must be 32 bytes"))?;
        Ok(Kek {
            key: LessSafeKey::new(unbound),
        })
    }

    /// Reads a base64 KEK file; with `create`, writes a new one (mode 0600) if missing.
    pub fn load_or_create(path: &Path, create: bool) -> anyhow::Result<Self> {
        if !path.exists() {
            if !create {
                bail!("KEK file {} does not exist", path.display());
            }
            let mut bytes = [0u8; 32];
            SystemRandom::new()
                .fill(&mut bytes)
                .map_err(|_| anyhow!("no randomness"))?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            write_private_file(path, STANDARD.encode(bytes).as_bytes())
                .with_context(|| format!("writing KEK file {}", path.display()))?;
            tracing::warn!(
                path = %path.display(),
                "generated a key-encryption key next to the database; in production supply \
                 ISSUER_KEK_FILE from a secret store"
            );
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading KEK file {}", path.display()))?;
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| anyhow!("KEK file {} is not base64", path.display()))?;
        Self::from_bytes(&bytes)
    }

    pub fn seal(&self, kid: &str, plaintext: &[u8]) -> anyhow::Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| anyhow!("no randomness"))?;
        let mut buf = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(kid.as_bytes()),
                &mut buf,
            )
            .map_err(|_| anyhow!("encryption failed"))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + buf.len());
        out.push(ENC_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        Ok(out)
    }

    pub fn open(&self, kid: &str, sealed: &[u8]) -> anyhow::Result<Vec<u8>> {
        if sealed.len() < 1 + NONCE_LEN || sealed[0] != ENC_V1 {
            bail!("key {kid}: unknown encryption format");
        }
        let nonce = Nonce::try_assume_unique_for_key(&sealed[1..1 + NONCE_LEN])
            .map_err(|_| anyhow!("bad nonce"))?;
        let mut buf = sealed[1 + NONCE_LEN..].to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(kid.as_bytes()), &mut buf)
            .map_err(|_| anyhow!("key {kid}: cannot decrypt (wrong KEK?)"))?;
        Ok(plain.to_vec())
    }
}

#[cfg(unix)]
fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

#[cfg(not(unix))]
fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

enum Signer {
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
    Rsa(RsaKeyPair),
}

/// A private key parsed once and kept in memory for signing.
pub struct SigningKey {
    pub kid: String,
    pub alg: SigningAlg,
    signer: Signer,
    rng: SystemRandom,
}

impl SigningKey {
    pub fn from_pkcs8(kid: &str, alg: SigningAlg, pkcs8: &[u8]) -> anyhow::Result<Self> {
        let rng = SystemRandom::new();
        let signer = match alg {
            SigningAlg::ES256 => Signer::Ec(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng)
                    .map_err(|e| anyhow!("key {kid}: bad P-256 key: {e}"))?,
            ),
            SigningAlg::EdDSA => Signer::Ed(
                Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
                    .map_err(|e| anyhow!("key {kid}: bad Ed25519 key: {e}"))?,
            ),
            SigningAlg::RS256 => Signer::Rsa(
                RsaKeyPair::from_pkcs8(pkcs8)
                    .map_err(|e| anyhow!("key {kid}: bad RSA key: {e}"))?,
            ),
        };
        Ok(SigningKey {
            kid: kid.to_string(),
            alg,
            signer,
            rng,
        })
    }

    pub fn sign(&self, message: &[u8]) -> anyhow::Result<Vec<u8>> {
        match &self.signer {
            Signer::Ec(k) => k
                .sign(&self.rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| anyhow!("ES256 signing failed")),
            Signer::Ed(k) => Ok(k.sign(message).as_ref().to_vec()),
            Signer::Rsa(k) => {
                let mut sig = vec![0u8; k.public().modulus_len()];
                k.sign(&RSA_PKCS1_SHA256, &self.rng, message, &mut sig)
                    .map_err(|_| anyhow!("RS256 signing failed"))?;
                Ok(sig)
            }
        }
    }

    pub fn public_jwk(&self) -> Jwk {
        let mut jwk = Jwk {
            kty: String::new(),
            kid: self.kid.clone(),
            alg: Some(self.alg.as_str().to_string()),
            use_: Some("sig".into()),
            crv: None,
            x: None,
            y: None,
            n: None,
            e: None,
        };
        match &self.signer {
            Signer::Ec(k) => {
                let point = k.public_key().as_ref();
                jwk.kty = "EC".into();
                jwk.crv = Some("P-256".into());
                jwk.x = Some(b64url_encode(&point[1..33]));
                jwk.y = Some(b64url_encode(&point[33..65]));
            }
            Signer::Ed(k) => {
                jwk.kty = "OKP".into();
                jwk.crv = Some("Ed25519".into());
                jwk.x = Some(b64url_encode(k.public_key().as_ref()));
            }
            Signer::Rsa(k) => {
                jwk.kty = "RSA".into();
                let parts = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(k.public());
                jwk.n = Some(b64url_encode(strip_leading_zeros(&parts.n)));
                jwk.e = Some(b64url_encode(strip_leading_zeros(&parts.e)));
            }
        }
        jwk
    }
}

/// JWK integers are minimal big-endian (RFC 7518 §6.3.1).
fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

/// A new private key in PKCS#8 DER.
pub fn generate_pkcs8(alg: SigningAlg) -> anyhow::Result<Vec<u8>> {
    let rng = SystemRandom::new();
    match alg {
        SigningAlg::ES256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map(|d| d.as_ref().to_vec())
            .map_err(|_| anyhow!("P-256 key generation failed")),
        SigningAlg::EdDSA => Ed25519KeyPair::generate_pkcs8(&rng)
            .map(|d| d.as_ref().to_vec())
            .map_err(|_| anyhow!("Ed25519 key generation failed")),
        SigningAlg::RS256 => {
            use rsa::pkcs8::EncodePrivateKey;
            // ring cannot generate RSA keys; the rsa crate can.
            let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)?;
            Ok(key.to_pkcs8_der()?.as_bytes().to_vec())
        }
    }
}

/// `k` + 96 random bits: the letter keeps ids from starting with `-`
/// (base64url may), which command lines would read as an option.
pub fn new_kid() -> String {
    let mut bytes = [0u8; 12];
    // Falls back to a time-based id only if the OS has no randomness, which
    // would already have failed key generation.
    if SystemRandom::new().fill(&mut bytes).is_err() {
        return format!("k{}", std::process::id());
    }
    format!("k{}", b64url_encode(&bytes))
}

/// A generated key, sealed for storage.
pub fn new_stored_key(
    kek: &Kek,
    key_use: KeyUse,
    alg: SigningAlg,
    state: &str,
    now: i64,
    activates_at: i64,
) -> anyhow::Result<StoredKey> {
    let kid = new_kid();
    let pkcs8 = generate_pkcs8(alg)?;
    let key = SigningKey::from_pkcs8(&kid, alg, &pkcs8)?;
    Ok(StoredKey {
        public_jwk: serde_json::to_string(&key.public_jwk())?,
        private_key_enc: kek.seal(&kid, &pkcs8)?,
        kid,
        alg: alg.as_str().to_string(),
        key_use,
        state: state.to_string(),
        created_at: now,
        activates_at,
        retires_at: None,
        removes_at: None,
    })
}

/// Which tokens a key signs. Access tokens (everything the edge verifies)
/// use the configured algorithm; OpenID Connect requires ID tokens to be
/// available in RS256 (Core §15.1), so while the access keys are not RS256
/// a second lane of RS256 keys, with the same lifecycle, signs ID tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyUse {
    Access,
    IdToken,
}

impl KeyUse {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyUse::Access => "access",
            KeyUse::IdToken => "id_token",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "access" => Some(KeyUse::Access),
            "id_token" => Some(KeyUse::IdToken),
            _ => None,
        }
    }
}

#[derive(Clone)]
pub struct StoredKey {
    pub kid: String,
    pub alg: String,
    pub key_use: KeyUse,
    pub state: String,
    pub public_jwk: String,
    pub private_key_enc: Vec<u8>,
    pub created_at: i64,
    pub activates_at: i64,
    pub retires_at: Option<i64>,
    pub removes_at: Option<i64>,
}

/// Key changes are logged: the sealed private key never is, not even encrypted.
impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("use", &self.key_use)
            .field("state", &self.state)
            .field("private_key_enc", &"<sealed, not shown>")
            .field("created_at", &self.created_at)
            .field("activates_at", &self.activates_at)
            .field("retires_at", &self.retires_at)
            .field("removes_at", &self.removes_at)
            .finish()
    }
}

pub struct KeyMaker<'a> {
    pub kek: &'a Kek,
    pub now: i64,
}

impl KeyMaker<'_> {
    pub fn make(
        &self,
        key_use: KeyUse,
        alg: SigningAlg,
        state: &str,
        activates_at: i64,
    ) -> anyhow::Result<StoredKey> {
        new_stored_key(self.kek, key_use, alg, state, self.now, activates_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_keys_open_only_with_the_same_kek_and_kid() {
        let kek = Kek::from_bytes(&[7u8; 32]).expect("kek");
        let sealed = kek.seal("kid1", b"secret key bytes").expect("seal");
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            kek.open("kid1", &sealed).expect("open"),
            b"secret key bytes"
        );
        assert!(kek.open("kid2", &sealed).is_err());
        let other = Kek::from_bytes(&[8u8; 32]).expect("kek");
        assert!(other.open("kid1", &sealed).is_err());
    }

    #[test]
    fn every_algorithm_signs_what_its_public_jwk_verifies() {
        for alg in [SigningAlg::ES256, SigningAlg::EdDSA, SigningAlg::RS256] {
            let pkcs8 = generate_pkcs8(alg).expect("generate");
            let key = SigningKey::from_pkcs8("k", alg, &pkcs8).expect("load");
            let sig = key.sign(b"message").expect("sign");
            let verifier =
                auth_types::VerifyingKey::from_jwk(&key.public_jwk()).expect("usable jwk");
            assert_eq!(verifier.alg, alg);
            assert!(verifier.verify_signature(b"message", &sig), "{alg}");
            assert!(!verifier.verify_signature(b"massage", &sig), "{alg}");
        }
    }
}
