//! Password hashing (argon2id), legacy bcrypt verification, and the password
//! policy (NIST 800-63B: length and a blocklist, no composition rules).

use std::collections::HashSet;
use std::sync::{Arc, LazyLock};

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

pub const MIN_PASSWORD_CHARS: usize = 8;
/// Long enough for any passphrase; bounded so hashing cost stays bounded.
pub const MAX_PASSWORD_CHARS: usize = 1024;

static COMMON: LazyLock<HashSet<String>> = LazyLock::new(|| {
    include_str!("common_passwords.txt")
        .lines()
        .map(|l| l.trim().to_lowercase())
        .filter(|l| !l.is_empty())
        .collect()
});

/// Why a password is refused, or `None` if acceptable.
pub fn weakness(password: &str, email: &str) -> Option<String> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Some(format!(
            "password must be at least {MIN_PASSWORD_CHARS} characters"
        ));
    }
    if chars > MAX_PASSWORD_CHARS {
        return Some(format!(
            "password must be at most {MAX_PASSWORD_CHARS} characters"
        ));
    }
    let lower = password.to_lowercase();
    if COMMON.contains(&lower) {
        return Some("password is too common".into());
    }
    if !email.is_empty() && lower == email.to_lowercase() {
        return Some("password must not be the email address".into());
    }
    None
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub ok: bool,
    /// The stored hash is legacy or weaker than today's parameters.
    pub needs_rehash: bool,
}

/// Hashes and verifies on a small pool of dedicated threads running at a
/// lower OS priority: a login storm then queues here and yields the CPU to
/// the async runtime, so refresh and JWKS requests are not starved.
pub struct PasswordHasher {
    params: Params,
    /// Bounded: when this many requests already wait, the next is refused
    /// (503 with Retry-After) instead of queueing without limit.
    jobs: std::sync::mpsc::SyncSender<Job>,
    /// Verified against when the account does not exist, so an unknown email
    /// costs the same time as a wrong password.
    dummy_hash: String,
    /// Queued checks dropped unhashed because nobody waited for them any more.
    abandoned: Arc<std::sync::atomic::AtomicU64>,
    /// The typical work of a check, in µs, per kind of hash (0: argon2 and
    /// the dummy; otherwise an imported bcrypt hash's cost): every check is
    /// padded to the largest, so an account with a bcrypt hash (another cost
    /// than argon2's) takes as long as an unknown one. Each average moves
    /// only with its own kind, so many argon2 checks do not wear a bcrypt
    /// figure down.
    floor_us: Arc<std::sync::Mutex<std::collections::HashMap<u32, u64>>>,
}

/// The averages move by 1/8 of each new check's difference (one slow
/// outlier does not slow every later check for long); never above this.
const FLOOR_WEIGHT: u64 = 8;
const MAX_FLOOR_US: u64 = 1_000_000;

type Job = Box<dyn FnOnce() + Send>;

/// How much lower than the rest of the process hashing threads run (nice).
const HASHING_NICENESS: i32 = 10;

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("hashing pool is gone")]
    Closed,
    #[error("too many password checks waiting")]
    Busy,
    #[error("cannot start hashing threads: {0}")]
    Spawn(#[from] std::io::Error),
}

fn start_pool(threads: usize, queue: usize) -> Result<std::sync::mpsc::SyncSender<Job>, HashError> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(queue);
    let rx = Arc::new(std::sync::Mutex::new(rx));
    for i in 0..threads {
        let rx = rx.clone();
        std::thread::Builder::new()
            .name(format!("password-hash-{i}"))
            .spawn(move || {
                // Per-thread on Linux: only this thread gets the lower priority.
                if let Err(e) = rustix::process::setpriority_process(
                    Some(rustix::thread::gettid()),
                    HASHING_NICENESS,
                ) {
                    tracing::warn!(error = %e, "cannot lower hashing thread priority");
                }
                loop {
                    let job = match rx.lock() {
                        Ok(guard) => guard.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => job(),
                        Err(_) => return, // hasher dropped
                    }
                }
            })?;
    }
    Ok(tx)
}

impl PasswordHasher {
    pub fn new(
        memory_kib: u32,
        iterations: u32,
        parallelism: u32,
        threads: usize,
        queue: usize,
    ) -> Result<Self, HashError> {
        let params = Params::new(memory_kib, iterations, parallelism, None)
            .map_err(|e| HashError::Hash(e.to_string()))?;
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            threads
        };
        let dummy_hash = hash_blocking(&params, "dummy password for timing")?;
        Ok(PasswordHasher {
            params,
            jobs: start_pool(threads, queue)?,
            dummy_hash,
            abandoned: Arc::default(),
            floor_us: Arc::default(),
        })
    }

    /// Records a check's work under its kind; the floor every check is
    /// padded to.
    fn note_work(&self, kind: u32, work: std::time::Duration) -> std::time::Duration {
        let us = u64::try_from(work.as_micros())
            .unwrap_or(u64::MAX)
            .min(MAX_FLOOR_US);
        let mut floors = self.floor_us.lock().unwrap_or_else(|e| e.into_inner());
        let avg = floors.entry(kind).or_insert(us);
        *avg = if us >= *avg {
            *avg + (us - *avg) / FLOOR_WEIGHT
        } else {
            *avg - (*avg - us) / FLOOR_WEIGHT
        };
        std::time::Duration::from_micros(floors.values().copied().max().unwrap_or(0))
    }

    /// The current floor: the largest kind's typical work.
    pub fn floor(&self) -> std::time::Duration {
        let floors = self.floor_us.lock().unwrap_or_else(|e| e.into_inner());
        std::time::Duration::from_micros(floors.values().copied().max().unwrap_or(0))
    }

    /// How many queued checks were dropped because their request went away.
    pub fn abandoned(&self) -> u64 {
        self.abandoned.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let (done, result) = tokio::sync::oneshot::channel();
        let abandoned = self.abandoned.clone();
        self.jobs
            .try_send(Box::new(move || {
                // The request went away (client disconnected, timeout)
                // while this waited: spend no CPU on it.
                if done.is_closed() {
                    abandoned.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return;
                }
                let _ = done.send(work());
            }))
            .map_err(|e| match e {
                std::sync::mpsc::TrySendError::Full(_) => HashError::Busy,
                std::sync::mpsc::TrySendError::Disconnected(_) => HashError::Closed,
            })?;
        result.await.map_err(|_| HashError::Closed)
    }

    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        let params = self.params.clone();
        self.run(move || hash_blocking(&params, &password)).await?
    }

    /// Verifies against `stored`, or against the dummy hash when `None`
    /// (which then always fails, after the same work).
    pub async fn verify(
        &self,
        password: String,
        stored: Option<String>,
    ) -> Result<Verified, HashError> {
        let exists = stored.is_some();
        let stored = stored.unwrap_or_else(|| self.dummy_hash.clone());
        let kind = bcrypt_cost(&stored).unwrap_or(0);
        let params = self.params.clone();
        let (verified, work) = self
            .run(move || {
                let started = std::time::Instant::now();
                let v = verify_blocking(&params, &password, &stored);
                (v, started.elapsed())
            })
            .await?;
        let verified = verified?;
        let floor = self.note_work(kind, work);
        if let Some(rest) = floor.checked_sub(work) {
            // Padding, not work: the hashing threads are free meanwhile.
            tokio::time::sleep(rest).await;
        }
        Ok(Verified {
            ok: verified.ok && exists,
            needs_rehash: verified.needs_rehash,
        })
    }
}

fn argon2(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

fn hash_blocking(params: &Params, password: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    argon2(params)
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError::Hash(e.to_string()))
}

fn is_bcrypt(stored: &str) -> bool {
    stored.starts_with("$2a$") || stored.starts_with("$2b$") || stored.starts_with("$2y$")
}

/// A bcrypt hash's cost (`$2b$12$…`: 12), which sets its time.
fn bcrypt_cost(stored: &str) -> Option<u32> {
    if !is_bcrypt(stored) {
        return None;
    }
    stored.get(4..6)?.parse().ok().filter(|c| *c > 0)
}

fn verify_blocking(params: &Params, password: &str, stored: &str) -> Result<Verified, HashError> {
    if is_bcrypt(stored) {
        // Legacy hashes imported from an older system: verify, then upgrade.
        let ok = bcrypt::verify(password, stored).unwrap_or(false);
        return Ok(Verified {
            ok,
            needs_rehash: true,
        });
    }
    let Ok(parsed) = PasswordHash::new(stored) else {
        return Ok(Verified {
            ok: false,
            needs_rehash: false,
        });
    };
    let ok = argon2(params)
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    let current = parsed.algorithm.as_str() == "argon2id"
        && Params::try_from(&parsed).is_ok_and(|p| {
            p.m_cost() >= params.m_cost()
                && p.t_cost() >= params.t_cost()
                && p.p_cost() >= params.p_cost()
        });
    Ok(Verified {
        ok,
        needs_rehash: !current,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_refuses_short_common_and_overlong_passwords() {
        assert!(weakness("short", "a@b.c").is_some());
        assert!(weakness("Password123", "a@b.c").is_some());
        assert!(weakness("a@b.example", "a@b.example").is_some());
        assert!(weakness(&"x".repeat(MAX_PASSWORD_CHARS + 1), "a@b.c").is_some());
        assert_eq!(weakness("correct horse battery", "a@b.c"), None);
        assert_eq!(weakness(&"long passphrase ".repeat(8), "a@b.c"), None);
    }

    #[tokio::test]
    async fn a_full_queue_refuses_and_abandoned_checks_cost_nothing() {
        // One thread, one queue slot.
        let hasher = PasswordHasher::new(1024, 1, 1, 1, 1).expect("hasher");
        let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        // Occupy the only thread until released.
        use futures_util::FutureExt;
        let mut blocker = Box::pin(hasher.run(move || {
            let _ = started_tx.send(());
            let _ = release_rx.recv();
        }));
        assert!(
            (&mut blocker).now_or_never().is_none(),
            "handed to the thread"
        );
        started_rx.recv().expect("blocker running");
        // Fill the one slot with a check whose caller then goes away.
        let mut gave_up = Box::pin(hasher.verify("pw".into(), None));
        assert!((&mut gave_up).now_or_never().is_none(), "queued");
        // The queue is full: the next is refused at once, not queued.
        assert!(matches!(
            hasher.verify("x".into(), None).now_or_never(),
            Some(Err(HashError::Busy))
        ));
        drop(gave_up);
        release_tx.send(()).expect("release");
        blocker.await.expect("ran");
        // The abandoned check is skipped, not hashed; later work proceeds.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while hasher.abandoned() == 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        assert_eq!(hasher.abandoned(), 1);
        hasher.hash("after".into()).await.expect("hash after");
        assert_eq!(hasher.abandoned(), 1);
    }

    #[tokio::test]
    async fn every_check_is_padded_to_the_slower_kind() {
        // Review finding: an imported bcrypt hash (here a cost far above
        // this cheap argon2) took measurably longer than the dummy hash an
        // unknown account costs. After one such check, every check lasts
        // at least as long (a lower bound: padding guarantees it), and many
        // argon2 checks do not wear that down.
        let hasher = PasswordHasher::new(1024, 1, 1, 2, 16).expect("hasher");
        let legacy = bcrypt::hash("old-password", 10).expect("bcrypt");
        hasher
            .verify("wrong".into(), Some(legacy))
            .await
            .expect("verify");
        let floor = hasher.floor();
        assert!(floor >= std::time::Duration::from_millis(1), "{floor:?}");
        for _ in 0..50 {
            hasher.verify("x".into(), None).await.expect("verify");
        }
        assert_eq!(hasher.floor(), floor, "argon2 checks leave bcrypt's figure");
        // A cheaper bcrypt cost keeps its own figure, not the dearer one's.
        let cheap = bcrypt::hash("old-password", 4).expect("bcrypt");
        hasher
            .verify("x".into(), Some(cheap))
            .await
            .expect("verify");
        assert_eq!(hasher.floor(), floor, "the dearest kind sets the floor");
        let started = std::time::Instant::now();
        hasher
            .verify("anything".into(), None)
            .await
            .expect("verify");
        let took = started.elapsed();
        assert!(took >= floor, "{took:?} < {floor:?}");
    }

    #[tokio::test]
    async fn argon2_and_legacy_bcrypt_verify_and_report_rehash() {
        let hasher = PasswordHasher::new(1024, 1, 1, 2, 16).expect("hasher");
        let hash = hasher.hash("s3cret-pass".into()).await.expect("hash");
        assert!(hash.starts_with("$argon2id$"));
        let ok = hasher
            .verify("s3cret-pass".into(), Some(hash.clone()))
            .await
            .expect("verify");
        assert_eq!(
            ok,
            Verified {
                ok: true,
                needs_rehash: false
            }
        );
        let bad = hasher
            .verify("wrong".into(), Some(hash))
            .await
            .expect("verify");
        assert!(!bad.ok);

        let legacy = bcrypt::hash("old-password", 4).expect("bcrypt");
        let v = hasher
            .verify("old-password".into(), Some(legacy.clone()))
            .await
            .expect("verify");
        assert!(v.ok && v.needs_rehash);
        let v = hasher
            .verify("not-it".into(), Some(legacy))
            .await
            .expect("verify");
        assert!(!v.ok);

        let weaker = PasswordHasher::new(512, 1, 1, 1, 16).expect("hasher");
        let old = weaker.hash("s3cret-pass".into()).await.expect("hash");
        let v = hasher
            .verify("s3cret-pass".into(), Some(old))
            .await
            .expect("verify");
        assert!(v.ok && v.needs_rehash);

        let unknown = hasher
            .verify("anything".into(), None)
            .await
            .expect("verify");
        assert!(!unknown.ok);
    }
}
