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

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use ffi::{Level, Stream, HEADERS_CONTINUE, HEADERS_STOP_ALL_WATERMARK, HEADERS_STOP_ITERATION};
use sidecar::authz::{now_ms, Authorizer};
use sidecar::decision::Decision;
use sidecar::edge::{answer, Answer, ProxyRequest};

/// Where the decision goes in the access log, as with ext_authz.
const METADATA_NAMESPACE: &str = "envoy.filters.http.ext_authz";

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FilterConfig {
    args: Vec<String>,
}

/// One filter config: its state and the runtime that keeps it current.
pub struct Config {
    authz: Arc<Authorizer>,
    runtime: Option<tokio::runtime::Runtime>,
    /// Aborts the followers when dropped.
    _sidecar: sidecar::Sidecar,
}

impl Config {
    fn new(name: &[u8], raw: &[u8]) -> Result<Config, String> {
        let name = String::from_utf8_lossy(name);
        let parsed: FilterConfig = serde_json::from_slice(raw).map_err(|e| {
            format!("filter {name}: the config must be JSON {{\"args\": [...]}}: {e}")
        })?;
        let settings = sidecar::config::Settings::from_args(&parsed.args)
            .map_err(|e| format!("filter {name}: {e}"))?;
        // Its own threads: Envoy's workers only ever read the state.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("devmentor-authz")
            .enable_all()
            .build()
            .map_err(|e| format!("filter {name}: runtime: {e}"))?;
        let sidecar = sidecar::start_on(settings, runtime.handle())
            .map_err(|e| format!("filter {name}: {e:#}"))?;
        ffi::log(
            Level::Info,
            &format!(
                "devmentor_authz: filter {name} started (issuer {}); until its keys arrive every request is refused",
                sidecar.authz.settings.issuer_url
            ),
        );
        Ok(Config {
            authz: sidecar.authz.clone(),
            runtime: Some(runtime),
            _sidecar: sidecar,
        })
    }

    fn new_filter(&self) -> Filter {
        Filter {
            authz: self.authz.clone(),
            runtime: self
                .runtime
                .as_ref()
                .map(|r| r.handle().clone())
                .unwrap_or_else(tokio::runtime::Handle::current),
            parked: Arc::new(Mutex::new(None)),
            waiting: false,
        }
    }
}

impl Drop for Config {
    fn drop(&mut self) {
        // Envoy's main thread must not wait for our threads.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// One stream.
pub struct Filter {
    authz: Arc<Authorizer>,
    runtime: tokio::runtime::Handle,
    /// A decision made off the worker thread, for `on_scheduled`.
    parked: Arc<Mutex<Option<Decision>>>,
    waiting: bool,
}

impl Filter {
    fn waiting(&self) -> bool {
        self.waiting
    }

    fn on_request_headers(&mut self, stream: &Stream) -> u32 {
        // As Envoy's ext_authz gives them: lower-case names (Envoy's own),
        // repeats joined with ','.
        let mut headers: HashMap<String, String> = HashMap::new();
        for (k, v) in stream.request_headers() {
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
            authz.decide(&request, now).await
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
                let scheduler = stream.scheduler();
                let parked = self.parked.clone();
                self.runtime.spawn(async move {
                    let decision = decision.await;
                    if let Ok(mut slot) = parked.lock() {
                        *slot = Some(decision);
                    }
                    scheduler.commit(0);
                });
                self.waiting = true;
                HEADERS_STOP_ALL_WATERMARK
            }
        }
    }

    fn on_scheduled(&mut self, stream: &Stream, _event: u64) {
        self.waiting = false;
        let decision = self.parked.lock().ok().and_then(|mut slot| slot.take());
        match decision {
            Some(decision) => {
                if self.apply(stream, decision) == HEADERS_CONTINUE {
                    stream.continue_decoding();
                }
            }
            // Cannot happen (the slot is filled before the commit); fail closed.
            None => stream.send_response(503, &[], ""),
        }
    }

    /// Allow: the identity headers set (client copies replaced) and the
    /// rest removed, then on. Deny: the local reply, with the gRPC path's
    /// status, body and challenge.
    fn apply(&self, stream: &Stream, decision: Decision) -> u32 {
        let s = &self.authz.settings;
        match &decision {
            Decision::Deny { reason, .. } => {
                stream.set_metadata(METADATA_NAMESPACE, "decision", "deny");
                stream.set_metadata(METADATA_NAMESPACE, "reason", reason.code());
            }
            Decision::Allow { rule, .. } if s.allow_metadata => {
                stream.set_metadata(METADATA_NAMESPACE, "decision", "allow");
                stream.set_metadata(METADATA_NAMESPACE, "rule", rule);
            }
            Decision::Allow { .. } => {}
        }
        match answer(s, &decision) {
            Answer::Allow { set, remove } => {
                for name in &remove {
                    stream.remove_request_header(name);
                }
                for (name, value) in &set {
                    stream.set_request_header(name, value);
                }
                HEADERS_CONTINUE
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
