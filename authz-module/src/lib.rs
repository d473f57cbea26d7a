//! The sidecar's decision inside Envoy: an Envoy dynamic module (a second
//! front end for the same core as the gRPC server). Each filter config runs
//! the sidecar's state — keys with single-flight refetch, the revocation
//! feed, the role → permission map, the policy with hot reload, the
//! verified-token cache, the staleness bound — on its own background
//! runtime; each request is decided on Envoy's worker thread from memory.
//! When a decision would wait (a JWKS refetch for an unknown key), the
//! request is parked and resumed on its worker when the answer is in.
//!
//! Filter config (a `google.protobuf.StringValue`): JSON
//! `{"args": [...]}`, the flags of `sidecar serve` (no environment
//! fallbacks; listener flags are ignored, the module serves nothing).
#![deny(unsafe_code)]

mod ffi;

use std::cell::Cell;
use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use ffi::{
    Level, Scheduler, Stream, HEADERS_CONTINUE, HEADERS_STOP_ALL_WATERMARK, HEADERS_STOP_ITERATION,
};
use futures_util::FutureExt;
use sidecar_core::authz::{now_ms, Authorizer};
use sidecar_core::decision::{Decision, DenyReason};
use sidecar_core::edge::{answer, Answer, ProxyRequest};

/// Where the decision goes in the access log, as with ext_authz.
const METADATA_NAMESPACE: &str = "envoy.filters.http.ext_authz";
/// The headers a decision reads (credential, cookie rule, routing); only
/// these are copied out of Envoy.
const READ: [&str; 9] = [
    ":method",
    ":scheme",
    ":authority",
    ":path",
    "authorization",
    "cookie",
    "origin",
    "sec-fetch-site",
    "dpop",
];
/// A parked request waits at most this long (the sidecar's ext_authz
/// timeout in envoy/front-proxy.yaml.tmpl), then fails closed.
const PARKED_LIMIT: Duration = Duration::from_millis(500);

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FilterConfig {
    args: Vec<String>,
}

/// The state behind filter configs with the same arguments: one per
/// process, so a listener update (LDS) with unchanged arguments keeps its
/// keys, revocations and token cache warm instead of starting cold.
struct Shared {
    authz: Arc<Authorizer>,
    handle: tokio::runtime::Handle,
    runtime: Option<tokio::runtime::Runtime>,
    /// Aborts the followers when dropped.
    _sidecar: sidecar_core::Running,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Envoy's main thread must not wait for our threads.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn shared_states() -> &'static Mutex<HashMap<Vec<String>, Weak<Shared>>> {
    static STATES: OnceLock<Mutex<HashMap<Vec<String>, Weak<Shared>>>> = OnceLock::new();
    STATES.get_or_init(|| Mutex::new(HashMap::new()))
}

/// One filter config.
pub struct Config {
    shared: Arc<Shared>,
}

impl Config {
    fn new(name: &[u8], raw: &[u8]) -> Result<Config, String> {
        let name = String::from_utf8_lossy(name);
        let parsed: FilterConfig = serde_json::from_slice(raw).map_err(|e| {
            format!("filter {name}: the config must be JSON {{\"args\": [...]}}: {e}")
        })?;
        let mut states = shared_states()
            .lock()
            .map_err(|_| format!("filter {name}: state registry poisoned"))?;
        states.retain(|_, weak| weak.strong_count() > 0);
        if let Some(shared) = states.get(&parsed.args).and_then(Weak::upgrade) {
            return Ok(Config { shared });
        }
        let settings = sidecar_core::config::Settings::from_args(&parsed.args)
            .map_err(|e| format!("filter {name}: {e}"))?;
        // Its own threads: Envoy's workers only ever read the state.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("devmentor-authz")
            .enable_all()
            .build()
            .map_err(|e| format!("filter {name}: runtime: {e}"))?;
        let sidecar = sidecar_core::start_on(settings, runtime.handle())
            .map_err(|e| format!("filter {name}: {e:#}"))?;
        ffi::log(
            Level::Info,
            &format!(
                "devmentor_authz: filter {name} started (issuer {}); until its keys arrive every request is refused",
                sidecar.authz.settings.issuer_url
            ),
        );
        let shared = Arc::new(Shared {
            authz: sidecar.authz.clone(),
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
            _sidecar: sidecar,
        });
        states.insert(parsed.args, Arc::downgrade(&shared));
        Ok(Config { shared })
    }

    fn new_filter(&self) -> Filter {
        Filter {
            authz: self.shared.authz.clone(),
            runtime: self.shared.handle.clone(),
            parked: Arc::new(Mutex::new(Parked {
                decision: None,
                alive: true,
            })),
            waiting: Cell::new(false),
        }
    }
}

/// A decision made off the worker thread, and whether its stream is still
/// there to take it.
struct Parked {
    decision: Option<Decision>,
    alive: bool,
}

/// Hands a parked decision back to the stream's worker: always exactly
/// once, also when the task is cancelled (the runtime shutting down), and
/// never after the stream is gone (its filter clears `alive` on the worker
/// under the same lock, so no commit can reach a dispatcher Envoy freed).
struct Handback {
    parked: Arc<Mutex<Parked>>,
    scheduler: Option<Scheduler>,
}

impl Handback {
    fn give(mut self, decision: Decision) {
        if let Ok(mut parked) = self.parked.lock() {
            parked.decision = Some(decision);
        }
        self.commit();
    }

    fn commit(&mut self) {
        if let Some(scheduler) = self.scheduler.take() {
            if let Ok(parked) = self.parked.lock() {
                if parked.alive {
                    scheduler.commit(0);
                }
            }
        }
    }
}

impl Drop for Handback {
    fn drop(&mut self) {
        // Cancelled: the stream wakes with no decision and fails closed.
        self.commit();
    }
}

/// One stream. Hooks borrow it shared (Envoy may re-enter one hook from
/// another, e.g. the body hook from `continue_decoding`).
pub struct Filter {
    authz: Arc<Authorizer>,
    runtime: tokio::runtime::Handle,
    parked: Arc<Mutex<Parked>>,
    waiting: Cell<bool>,
}

impl Drop for Filter {
    fn drop(&mut self) {
        if let Ok(mut parked) = self.parked.lock() {
            parked.alive = false;
        }
    }
}

impl Filter {
    fn waiting(&self) -> bool {
        self.waiting.get()
    }

    fn on_request_headers(&self, stream: &Stream) -> u32 {
        // As Envoy's ext_authz gives them: lower-case names (Envoy's own),
        // repeats joined with ','.
        let mut headers: HashMap<String, String> = HashMap::with_capacity(READ.len());
        for (k, v) in stream.request_headers(&READ) {
            headers
                .entry(k)
                .and_modify(|e| {
                    e.push(',');
                    e.push_str(&v);
                })
                .or_insert(v);
        }
        let now = now_ms();
        let authz = self.authz.clone();
        let mut decision = Box::pin(async move {
            let get = |k: &str| headers.get(k).cloned().unwrap_or_default();
            let (method, scheme, host, path) = (
                get(":method"),
                get(":scheme"),
                get(":authority"),
                get(":path"),
            );
            let request = ProxyRequest {
                method: &method,
                scheme: &scheme,
                host: &host,
                path: &path,
                headers: &headers,
            };
            sidecar_core::edge::decide(&authz, &request, now).await
        });
        // From memory this is ready at the first poll; only a refetch for
        // an unknown key waits, and then not on Envoy's worker.
        let polled = {
            let _inside = self.runtime.enter();
            decision
                .as_mut()
                .poll(&mut Context::from_waker(Waker::noop()))
        };
        match polled {
            Poll::Ready(decision) => self.apply(stream, decision),
            Poll::Pending => {
                let handback = Handback {
                    parked: self.parked.clone(),
                    scheduler: Some(stream.scheduler()),
                };
                let authz = self.authz.clone();
                self.runtime.spawn(async move {
                    let waited = tokio::time::timeout(
                        PARKED_LIMIT,
                        AssertUnwindSafe(decision).catch_unwind(),
                    )
                    .await;
                    let decision = match waited {
                        Ok(Ok(decision)) => decision,
                        // Too slow, or it panicked: fail closed.
                        _ => authz.refuse(DenyReason::StaleState),
                    };
                    handback.give(decision);
                });
                self.waiting.set(true);
                HEADERS_STOP_ALL_WATERMARK
            }
        }
    }

    /// Whether to continue decoding (the caller does, once this returns).
    fn on_scheduled(&self, stream: &Stream, _event: u64) -> bool {
        self.waiting.set(false);
        let decision = self.parked.lock().ok().and_then(|mut p| p.decision.take());
        match decision {
            Some(decision) => self.apply(stream, decision) == HEADERS_CONTINUE,
            // Cancelled (the runtime shut down): fail closed.
            None => {
                stream.send_response(503, &[], "");
                false
            }
        }
    }

    /// Allow: the identity headers set (client copies replaced) and the
    /// rest removed, then on. Deny: the local reply, with the gRPC path's
    /// status, body and challenge.
    fn apply(&self, stream: &Stream, decision: Decision) -> u32 {
        let s = &self.authz.settings;
        match &decision {
            Decision::Deny { reason, rule, .. } => {
                stream.set_metadata(METADATA_NAMESPACE, "decision", "deny");
                stream.set_metadata(METADATA_NAMESPACE, "reason", reason.code());
                if let Some(rule) = rule {
                    stream.set_metadata(METADATA_NAMESPACE, "rule", rule);
                }
            }
            Decision::Allow { rule, identity } if s.allow_metadata => {
                stream.set_metadata(METADATA_NAMESPACE, "decision", "allow");
                stream.set_metadata(METADATA_NAMESPACE, "rule", rule);
                if let Some(claims) = identity {
                    stream.set_metadata(METADATA_NAMESPACE, "user_id", &claims.sub);
                }
            }
            Decision::Allow { .. } => {}
        }
        // Read again here (the decision may have been parked): the answer
        // rewrites it without the issuer's cookies.
        let cookie: HashMap<String, String> = match &decision {
            Decision::Allow { .. } => {
                let mut joined: Option<String> = None;
                for (_, v) in stream.request_headers(&["cookie"]) {
                    match &mut joined {
                        Some(j) => {
                            j.push(',');
                            j.push_str(&v);
                        }
                        None => joined = Some(v),
                    }
                }
                joined
                    .map(|v| ("cookie".to_string(), v))
                    .into_iter()
                    .collect()
            }
            Decision::Deny { .. } => HashMap::new(),
        };
        match answer(s, &decision, &cookie) {
            Answer::Allow { set, remove } => {
                let mut done = true;
                for name in &remove {
                    done &= stream.remove_request_header(name);
                }
                for (name, value) in &set {
                    done &= stream.set_request_header(name, value);
                }
                if done {
                    HEADERS_CONTINUE
                } else {
                    // The identity headers are not what we decided: no further.
                    ffi::log(
                        Level::Error,
                        "devmentor_authz: could not set the identity headers",
                    );
                    stream.send_response(503, &[], "");
                    HEADERS_STOP_ITERATION
                }
            }
            Answer::Deny {
                status,
                headers,
                body,
            } => {
                stream.send_response(status, &headers, &body);
                HEADERS_STOP_ITERATION
            }
        }
    }
}

/// The sidecar's `tracing` events (issuer unreachable, feed reconnects,
/// policy reloads) go to Envoy's log, under `dynamic_modules`.
fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(EnvoyLog)
        .without_time()
        .with_ansi(false)
        .try_init();
}

struct EnvoyLog;

struct EnvoyLine {
    level: Level,
    line: Vec<u8>,
}

impl std::io::Write for EnvoyLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for EnvoyLine {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.line);
        let text = text.trim_end();
        if !text.is_empty() {
            ffi::log(self.level, &format!("devmentor_authz: {text}"));
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for EnvoyLog {
    type Writer = EnvoyLine;
    fn make_writer(&'a self) -> EnvoyLine {
        EnvoyLine {
            level: Level::Info,
            line: Vec::new(),
        }
    }
    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> EnvoyLine {
        let level = match *meta.level() {
            tracing::Level::ERROR => Level::Error,
            tracing::Level::WARN => Level::Warn,
            tracing::Level::INFO => Level::Info,
            _ => Level::Debug,
        };
        EnvoyLine {
            level,
            line: Vec::new(),
        }
    }
}
