//! The signed-in state on disk: one JSON file only its owner can read
//! (0600, in a 0700 directory), written whole or not at all.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// What `login` leaves for `token`, `whoami` and `logout`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Credentials {
    pub issuer: String,
    pub client_id: String,
    pub access_token: String,
    /// Unix seconds.
    pub expires_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub scope: String,
    /// The DPoP key the tokens are bound to (`login --dpop`): PKCS#8,
    /// base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_key: Option<String>,
}

/// `$DEVMENTOR_CREDENTIALS`, else `$XDG_CONFIG_HOME/devmentor/credentials.json`,
/// else `~/.config/devmentor/credentials.json`.
pub fn default_path() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("DEVMENTOR_CREDENTIALS") {
        return Ok(PathBuf::from(p));
    }
    let config = match std::env::var_os("XDG_CONFIG_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => {
            let home = std::env::var_os("HOME").context("HOME is not set")?;
            PathBuf::from(home).join(".config")
        }
    };
    Ok(config.join("devmentor").join("credentials.json"))
}

/// The credentials, if any; a file others may read or write is refused
/// (as ssh refuses its keys): it may not be the user's.
pub fn load(path: &Path) -> Result<Option<Credentials>> {
    if let Some(mode) = group_or_world(path) {
        bail!(
            "{}: permissions {mode:o} are too open (others may read or write it): \
             chmod 600 it, or sign in again",
            path.display()
        );
    }
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .with_context(|| format!("{}: not a credentials file", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes a temporary file beside `path` (created 0600, never wider) and
/// renames it over: a crash leaves the old file or the new, never half.
pub fn save(path: &Path, creds: &Credentials) -> Result<()> {
    let dir = path
        .parent()
        .context("the credentials path has no directory")?;
    create_private_dir(dir)?;
    if let Some(mode) = group_or_world(dir).filter(|m| m & 0o022 != 0) {
        bail!(
            "{}: permissions {mode:o} let others write there: refusing to keep credentials in it",
            dir.display()
        );
    }
    // One temporary file per process: two runs refreshing at once do not
    // write over each other's.
    let tmp = path.with_extension(format!("json.{}.tmp", std::process::id()));
    let text = serde_json::to_vec_pretty(creds)?;
    {
        use std::io::Write;
        let _ = std::fs::remove_file(&tmp);
        let mut file = private_file(&tmp)?;
        file.write_all(&text)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

pub fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// The permission bits others have on `path`, when any (unix).
#[cfg(unix)]
fn group_or_world(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then_some(mode)
}

#[cfg(not(unix))]
fn group_or_world(_: &Path) -> Option<u32> {
    None
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.exists() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

#[cfg(unix)]
fn private_file(path: &Path) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))
}

#[cfg(not(unix))]
fn private_file(path: &Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))
}
