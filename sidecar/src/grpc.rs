//! The gRPC edge: converts Envoy's CheckRequest into domain types, asks the
//! authorizer, and converts the decision into a CheckResponse. A deny is an
//! `Ok(CheckResponse)`; `Err(Status)` only when no decision could be made.

use std::collections::HashMap;
use std::sync::Arc;

use envoy_types::ext_authz::v3::pb::{
    Authorization, CheckRequest, CheckResponse, DeniedHttpResponse, HeaderAppendAction,
    HeaderValue, HeaderValueOption, HttpResponse, HttpStatus, OkHttpResponse,
};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{
    HttpRequest, Request as AttributeRequest,
};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value};
use envoy_types::pb::google::rpc;
use tonic::{Request, Response, Status};

use crate::authz::{now_ms, Authorizer};
use crate::decision::{Decision, DenyReason, StepUp};
use crate::edge::{answer, bearer_token, decide, Answer, ProxyRequest};

pub struct AuthzService {
    pub authz: Arc<Authorizer>,
    /// `None` unless an OTLP endpoint is configured.
    pub tracing: Option<Arc<telemetry::Tracing>>,
}

#[tonic::async_trait]
impl Authorization for AuthzService {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        let now = now_ms();
        // Continue the trace Envoy started for this request (its context
        // arrives in the call's gRPC metadata).
        let mut span = self.tracing.as_ref().map(|t| {
            let md = request.metadata();
            let value = |k: &str| md.get(k).and_then(|v| v.to_str().ok());
            t.server_span(
                "ext_authz check",
                &telemetry::extract(value("traceparent"), value("tracestate")),
                Vec::new(),
            )
        });
        let check = request.into_inner();
        let http = check
            .attributes
            .as_ref()
            .and_then(|a| a.request.as_ref())
            .and_then(|r| r.http.as_ref())
            .ok_or_else(|| Status::invalid_argument("CheckRequest has no HTTP attributes"))?;
        let request = ProxyRequest {
            method: &http.method,
            scheme: &http.scheme,
            host: &http.host,
            path: &http.path,
            headers: &http.headers,
        };
        let decision = decide(&self.authz, &request, now).await;
        if let Some(span) = span.as_mut() {
            let token = bearer_token(&http.headers, self.authz.settings.token_cookie.as_deref());
            record(span, &http.method, &http.path, &decision);
            // Only for a valid JWS shape (bounded: a kid is short or absent).
            if let Some(kid) = token
                .and_then(auth_types::jws::peek_kid)
                .filter(|k| k.len() <= 64)
            {
                use telemetry::SpanApi;
                span.set_attribute(telemetry::Attribute::new("authz.key_id", kid));
            }
        }
        Ok(Response::new(self.to_response(decision, &http.headers)))
    }
}

/// The decision as span attributes (bounded values: no token, no identity).
fn record(span: &mut telemetry::ActiveSpan, method: &str, path: &str, decision: &Decision) {
    use telemetry::SpanApi;
    let path = path.split('?').next().unwrap_or_default().to_string();
    span.set_attribute(telemetry::Attribute::new(
        "http.request.method",
        method.to_string(),
    ));
    span.set_attribute(telemetry::Attribute::new("url.path", path));
    match decision {
        Decision::Allow { rule, .. } => {
            span.set_attribute(telemetry::Attribute::new("authz.decision", "allow"));
            span.set_attribute(telemetry::Attribute::new("authz.rule", rule.clone()));
        }
        Decision::Deny { rule, reason, .. } => {
            span.set_attribute(telemetry::Attribute::new("authz.decision", "deny"));
            span.set_attribute(telemetry::Attribute::new("authz.reason", reason.code()));
            if let Some(rule) = rule {
                span.set_attribute(telemetry::Attribute::new("authz.rule", rule.clone()));
            }
        }
    }
}

/// A CheckRequest as Envoy sends it for an HTTP request, with an optional
/// bearer token (for clients of this API: tests, benchmarks, tools).
pub fn http_check_request(
    method: &str,
    host: &str,
    path: &str,
    token: Option<&str>,
) -> CheckRequest {
    let mut headers = HashMap::new();
    if let Some(t) = token {
        headers.insert("authorization".to_string(), format!("Bearer {t}"));
    }
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(AttributeRequest {
                http: Some(HttpRequest {
                    method: method.into(),
                    host: host.into(),
                    path: path.into(),
                    headers,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

fn header(key: &str, value: &str, action: HeaderAppendAction) -> HeaderValueOption {
    #[allow(deprecated)]
    HeaderValueOption {
        header: Some(HeaderValue {
            key: key.to_string(),
            value: value.to_string(),
            raw_value: Vec::new(),
        }),
        append: None,
        append_action: action.into(),
        keep_empty_value: false,
    }
}

fn string_value(s: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.to_string())),
    }
}

fn metadata(fields: &[(&str, &str)]) -> Struct {
    Struct {
        fields: fields
            .iter()
            .map(|(k, v)| (k.to_string(), string_value(v)))
            .collect(),
    }
}

impl AuthzService {
    fn to_response(&self, decision: Decision, headers: &HashMap<String, String>) -> CheckResponse {
        let s = &self.authz.settings;
        let what = answer(s, &decision, headers);
        match decision {
            Decision::Allow { rule, identity } => {
                let mut ok = OkHttpResponse::default();
                if let Answer::Allow { set, remove } = what {
                    // Overwrite replaces every client-sent copy of these headers.
                    let overwrite = HeaderAppendAction::OverwriteIfExistsOrAdd;
                    ok.headers = set.iter().map(|(k, v)| header(k, v, overwrite)).collect();
                    ok.headers_to_remove = remove;
                }
                let mut meta = Vec::new();
                if let (Some(claims), true) = (&identity, s.allow_metadata) {
                    meta.push(("user_id", claims.sub.as_str()));
                }
                CheckResponse {
                    status: Some(rpc::Status {
                        code: tonic::Code::Ok as i32,
                        ..Default::default()
                    }),
                    // Envoy parses and stores metadata on every request: on
                    // allows it is opt-in (denies always carry their reason).
                    dynamic_metadata: s.allow_metadata.then(|| {
                        meta.extend([("decision", "allow"), ("rule", rule.as_str())]);
                        metadata(&meta)
                    }),
                    http_response: Some(HttpResponse::OkResponse(ok)),
                }
            }
            Decision::Deny {
                rule,
                reason,
                allow,
                retry_after,
                step_up,
            } => self.deny(
                rule.as_deref(),
                reason,
                allow.as_deref(),
                retry_after,
                step_up,
            ),
        }
    }

    fn deny(
        &self,
        rule: Option<&str>,
        reason: DenyReason,
        allow: Option<&str>,
        retry_after: Option<u64>,
        step_up: Option<StepUp>,
    ) -> CheckResponse {
        let denial = crate::decision::render_denial(reason, allow, retry_after, step_up);
        let status = denial.status;
        let overwrite = HeaderAppendAction::OverwriteIfExistsOrAdd;
        let headers: Vec<_> = denial
            .headers
            .iter()
            .map(|(k, v)| header(k, v, overwrite))
            .collect();
        let body = denial.body;
        let code = match status {
            400 => tonic::Code::InvalidArgument,
            401 => tonic::Code::Unauthenticated,
            503 => tonic::Code::Unavailable,
            429 => tonic::Code::ResourceExhausted,
            _ => tonic::Code::PermissionDenied,
        };
        let mut meta = vec![("decision", "deny"), ("reason", reason.code())];
        if let Some(rule) = rule {
            meta.push(("rule", rule));
        }
        CheckResponse {
            status: Some(rpc::Status {
                code: code as i32,
                message: reason.code().into(),
                details: Vec::new(),
            }),
            dynamic_metadata: Some(metadata(&meta)),
            http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
                status: Some(HttpStatus {
                    code: i32::from(status),
                }),
                headers,
                body,
            })),
        }
    }
}
