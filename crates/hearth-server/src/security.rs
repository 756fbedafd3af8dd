//! Secure defaults, checked in one middleware before any handler runs.
//!
//! - **Host** (DNS rebinding): a web page on `evil.example` whose name is re-pointed at
//!   127.0.0.1 reaches a loopback server with `Host: evil.example`. A loopback-bound server
//!   therefore answers only requests whose Host is a loopback name or address (with its port,
//!   or none), and refuses the rest with 403. A server bound beyond loopback must have an API
//!   key, which a rebinding page does not have, so it accepts any Host.
//! - **Origin** (CORS): no wildcard, ever. A browser request is allowed from its own origin
//!   (`http://<the Host it sent>`) and from origins configured with `--allowed-origin`; the
//!   allowed Origin is echoed in `Access-Control-Allow-Origin` but credentials are never
//!   allowed. Any other Origin gets 403 before its request runs: a "simple" cross-site POST
//!   would otherwise still make the model work even though the page cannot read the answer.
//! - **API keys**: `Authorization: Bearer <key>` (or `x-api-key: <key>`), compared in constant time against every
//!   accepted key (the desktop's per-launch token, `hearth serve`'s access token from
//!   `<data dir>/api-token`, and the user's own key for other programs can all be set).
//!   `/api/*` (history, settings, models, downloads, system) always needs one, even on
//!   loopback: another local user or program must not read or change the history. `/v1/*`
//!   and `/metrics` need one when the user set a key, or when the `require_key_for_openai_api`
//!   setting asks for it; otherwise a loopback server leaves them open to OpenAI-style tools
//!   (a documented choice). `/health` (which then says only ready or loading), CORS
//!   preflights (browsers send them without credentials) and the UI's static files (they
//!   hold no secret) need no key.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::AppState;

/// How long a browser may cache a preflight answer (seconds).
const PREFLIGHT_MAX_AGE_SECS: &str = "600";
/// The methods the API answers.
/// (PATCH and DELETE: conversations and settings, from a UI on an allowed origin.)
const ALLOWED_METHODS: &str = "GET, POST, PATCH, DELETE, OPTIONS";
/// Request headers allowed when a preflight does not list any.
const DEFAULT_ALLOWED_HEADERS: &str = "authorization, content-type, x-api-key";
/// Headers a browser page may read from responses.
const EXPOSED_HEADERS: &str = "retry-after";
/// The longest `Access-Control-Request-Headers` a preflight may send.
const MAX_REQUESTED_HEADERS_LEN: usize = 2048;
/// The header Anthropic's clients send their key in.
pub const X_API_KEY: &str = "x-api-key";
/// Routes that need no API key.
const PUBLIC_PATHS: &[&str] = &["/health"];
/// Routes of the Ollama listener that need no API key (what clients probe).
const OLLAMA_PUBLIC_PATHS: &[&str] = &["/", "/api/version"];

/// Whether `path` is Hearth's own API (`/api/*`), which always needs a key.
pub fn is_private_path(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/")
}

/// Whether a keyless request to the OpenAI-style API (`/v1/*`, `/metrics`) is let through: on
/// a server without a user key, unless the settings ask for the key there too.
fn openai_keyless(state: &AppState) -> bool {
    !state.security.api_key_required()
        && !state
            .settings
            .as_deref()
            .is_some_and(|settings| settings.load().require_key_for_openai_api)
}

/// Configuration that cannot be made safe, found before the server binds.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecurityConfigError {
    #[error("refusing to listen on {address} without an API key: anyone on the network could use the model. Pass --api-key (or set HEARTH_API_KEY), or bind 127.0.0.1")]
    NonLoopbackWithoutKey { address: IpAddr },
    #[error("--allowed-origin {origin:?} is not allowed: wildcard and null origins would let any web page use the API; name each origin (for example http://localhost:5173)")]
    WildcardOrigin { origin: String },
    #[error("--allowed-origin {origin:?} is not an origin: expected scheme://host[:port] with no path (for example http://localhost:5173)")]
    MalformedOrigin { origin: String },
    #[error("an API key must not be empty")]
    EmptyApiKey,
}

/// The checks every request goes through.
#[derive(Debug, Clone)]
pub struct SecurityPolicy {
    /// Accepted Host values (lowercase, with and without the port); `None` accepts any.
    allowed_hosts: Option<Vec<String>>,
    /// Origins allowed besides the server's own (lowercase, no trailing slash).
    allowed_origins: Vec<String>,
    /// The server's own origins under its loopback names (`http://localhost:4327`).
    own_origins: Vec<String>,
    /// Every accepted key (the user's keys and the access tokens).
    api_keys: Vec<String>,
    /// Whether the user configured a key: then `/v1/*` needs one too.
    user_key_set: bool,
}

impl SecurityPolicy {
    /// The policy for a server bound to `address` that accepts any of `api_keys` (none: no
    /// key needed): refuses a non-loopback address without a key, empty keys, and wildcard
    /// or malformed origins.
    pub fn for_bound_address(
        address: SocketAddr,
        api_keys: Vec<String>,
        allowed_origins: &[String],
    ) -> Result<Self, SecurityConfigError> {
        if api_keys.iter().any(String::is_empty) {
            return Err(SecurityConfigError::EmptyApiKey);
        }
        let ip = address.ip();
        let loopback = ip.is_loopback();
        if !loopback && api_keys.is_empty() {
            return Err(SecurityConfigError::NonLoopbackWithoutKey { address: ip });
        }
        let allowed_hosts = loopback.then(|| loopback_hosts(address));
        let port_suffix = format!(":{}", address.port());
        let own_origins = allowed_hosts
            .iter()
            .flatten()
            .filter(|host| host.ends_with(&port_suffix))
            .map(|host| format!("http://{host}"))
            .collect();
        let allowed_origins = allowed_origins
            .iter()
            .map(|origin| normalize_origin(origin))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            allowed_hosts,
            allowed_origins,
            own_origins,
            user_key_set: !api_keys.is_empty(),
            api_keys,
        })
    }

    /// Also accepts `token` (`hearth serve`'s access token for the web UI), without making
    /// `/v1/*` need a key.
    pub fn with_access_token(mut self, token: String) -> Result<Self, SecurityConfigError> {
        if token.is_empty() {
            return Err(SecurityConfigError::EmptyApiKey);
        }
        if !self.api_keys.contains(&token) {
            self.api_keys.push(token);
        }
        Ok(self)
    }

    /// The same policy for another listener of the same server, on `port` (the Ollama
    /// listener): its Host names and own origins carry that port.
    pub fn for_port(&self, port: u16) -> Self {
        let mut policy = self.clone();
        if let Some(hosts) = &self.allowed_hosts {
            let names: Vec<&String> = hosts.iter().filter(|host| !host_has_port(host)).collect();
            let with_port: Vec<String> = names
                .iter()
                .flat_map(|name| [name.to_string(), format!("{name}:{port}")])
                .collect();
            policy.own_origins = with_port
                .iter()
                .filter(|host| host_has_port(host))
                .map(|host| format!("http://{host}"))
                .collect();
            policy.allowed_hosts = Some(with_port);
        }
        policy
    }

    /// Whether the OpenAI-style API (`/v1/*`) needs a key whatever the settings say (the user
    /// configured one).
    pub fn api_key_required(&self) -> bool {
        self.user_key_set
    }

    /// Whether `host` (a Host header value) names this server.
    pub fn host_allowed(&self, host: &str) -> bool {
        match &self.allowed_hosts {
            None => true,
            Some(allowed) => {
                let host = host.trim().to_ascii_lowercase();
                allowed.contains(&host)
            }
        }
    }

    /// Whether a page from `origin` may call the API; `host` is the request's Host header.
    pub fn origin_allowed(&self, origin: &str, host: &str) -> bool {
        let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
        let host = host.trim().to_ascii_lowercase();
        let same_origin = !host.is_empty()
            && (origin == format!("http://{host}") || origin == format!("https://{host}"));
        same_origin || self.own_origins.contains(&origin) || self.allowed_origins.contains(&origin)
    }

    /// Whether the request carries one of the accepted keys (never true without keys).
    /// The key is `Authorization: Bearer <key>`, or `x-api-key: <key>` as Anthropic's
    /// clients send it.
    pub fn key_accepted(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let presented = match (headers.get(header::AUTHORIZATION), headers.get(X_API_KEY)) {
            (Some(value), _) => value.to_str().ok().and_then(|value| {
                let (scheme, key) = value.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
            }),
            (None, Some(value)) => value.to_str().ok().map(str::trim),
            (None, None) => {
                return Err(ApiError::unauthorized(
                    "Missing API key: send it as 'Authorization: Bearer <key>' (or 'x-api-key: <key>').",
                ))
            }
        }
        .unwrap_or("");
        if any_key_matches(&self.api_keys, presented.as_bytes()) {
            Ok(())
        } else {
            // The presented key is never repeated back.
            Err(ApiError::unauthorized("Incorrect API key provided."))
        }
    }
}

/// Compares keys in time that depends on the expected key's length only, never on how much
/// of the presented key is right.
pub fn keys_match(expected: &[u8], presented: &[u8]) -> bool {
    let mut equal = (expected.len() as u64).ct_eq(&(presented.len() as u64));
    for (index, byte) in expected.iter().enumerate() {
        let other = presented.get(index).copied().unwrap_or(0);
        equal &= byte.ct_eq(&other);
    }
    equal.into()
}

/// Whether `presented` equals one of `expected`. Every key is compared, with no early exit, so
/// the time taken does not tell which key (or how much of one) was right.
pub fn any_key_matches(expected: &[String], presented: &[u8]) -> bool {
    let mut matched = subtle::Choice::from(0);
    for key in expected {
        matched |= subtle::Choice::from(u8::from(keys_match(key.as_bytes(), presented)));
    }
    matched.into()
}

/// The Host values of a loopback-bound server: its loopback names and addresses, with its
/// port and without (a client on the default port of its scheme leaves the port out).
fn loopback_hosts(address: SocketAddr) -> Vec<String> {
    let port = address.port();
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "[::1]".to_string(),
    ];
    let bound = match address.ip() {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    };
    if !names.contains(&bound) {
        names.push(bound);
    }
    names
        .iter()
        .flat_map(|name| [name.clone(), format!("{name}:{port}")])
        .collect()
}

/// Whether a Host value names a port (`127.0.0.1:4327`, `[::1]:4327`; not `[::1]`).
fn host_has_port(host: &str) -> bool {
    match host.rsplit_once(']') {
        Some((_, rest)) => rest.starts_with(':'),
        None => host.contains(':'),
    }
}

/// Checks an origin is `scheme://host[:port]` and returns it lowercase.
fn normalize_origin(origin: &str) -> Result<String, SecurityConfigError> {
    let trimmed = origin.trim().trim_end_matches('/');
    if trimmed == "*" || trimmed.eq_ignore_ascii_case("null") || trimmed.contains('*') {
        return Err(SecurityConfigError::WildcardOrigin {
            origin: origin.to_string(),
        });
    }
    let malformed = || SecurityConfigError::MalformedOrigin {
        origin: origin.to_string(),
    };
    let (scheme, rest) = trimmed.split_once("://").ok_or_else(malformed)?;
    let scheme_ok = !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    let rest_ok = !rest.is_empty() && !rest.contains(['/', '?', '#', '@', ' ']) && rest.is_ascii();
    if !scheme_ok || !rest_ok {
        return Err(malformed());
    }
    Ok(trimmed.to_ascii_lowercase())
}

/// The Host a request names: the `Host` header, or the URI's authority (HTTP/2).
fn request_host(request: &Request) -> Option<String> {
    request
        .headers()
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string)
        .or_else(|| request.uri().authority().map(|a| a.as_str().to_string()))
}

/// The middleware: Host, Origin, preflight, API key, then the handler; CORS headers on the way
/// out for allowed origins.
pub async fn enforce(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let private = is_private_path(request.uri().path());
    enforce_with(&state, request, next, private, PUBLIC_PATHS).await
}

/// [`enforce`] for the Ollama listener: nothing there is Hearth's private API (its `/api/*`
/// is Ollama's, under the key rules of `/v1`), and `/` (the probe clients send) needs no key.
pub async fn enforce_ollama(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    enforce_with(&state, request, next, false, OLLAMA_PUBLIC_PATHS).await
}

async fn enforce_with(
    state: &AppState,
    request: Request,
    next: Next,
    private: bool,
    public_paths: &[&str],
) -> Response {
    let policy = &state.security;
    let Some(host) = request_host(&request) else {
        return ApiError::forbidden("host_not_allowed", "The request has no Host header.")
            .into_response();
    };
    if !policy.host_allowed(&host) {
        return ApiError::forbidden(
            "host_not_allowed",
            "The Host header does not name this server; only loopback names are accepted.",
        )
        .into_response();
    }
    let origin = match request.headers().get(header::ORIGIN) {
        None => None,
        Some(value) => match value.to_str() {
            Ok(origin) if policy.origin_allowed(origin, &host) => Some(value.clone()),
            _ => {
                return ApiError::forbidden(
                    "origin_not_allowed",
                    "Requests from this web origin are not allowed. Start the server with --allowed-origin to allow one.",
                )
                .into_response()
            }
        },
    };
    let is_preflight = request.method() == Method::OPTIONS
        && origin.is_some()
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let path = request.uri().path();
    let mut response = if is_preflight {
        preflight_response(request.headers())
    } else if !private
        && (public_paths.contains(&path)
            || is_static_file_request(&request)
            || openai_keyless(state))
    {
        next.run(request).await
    } else {
        match policy.key_accepted(request.headers()) {
            Ok(()) => next.run(request).await,
            Err(error) => error.into_response(),
        }
    };
    if let Some(origin) = origin {
        add_cors_headers(response.headers_mut(), origin);
    }
    response
}

/// A request for the web UI's files: a GET or HEAD outside the API that matched no API route
/// (so it reaches the static fallback, which serves nothing else).
fn is_static_file_request(request: &Request) -> bool {
    request.extensions().get::<MatchedPath>().is_none()
        && crate::ui::is_static_request(request.method(), request.uri().path())
}

fn preflight_response(request_headers: &HeaderMap) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(ALLOWED_METHODS),
    );
    // The origin is already known to be allowed, so any well-formed header list it asks for
    // (the OpenAI JavaScript SDK sends its own x-stainless-* headers) may be granted.
    let requested = request_headers
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .filter(|value| {
            value.len() <= MAX_REQUESTED_HEADERS_LEN
                && value
                    .as_bytes()
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b',' | b' '))
        })
        .cloned()
        .unwrap_or(HeaderValue::from_static(DEFAULT_ALLOWED_HEADERS));
    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested);
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static(PREFLIGHT_MAX_AGE_SECS),
    );
    response
}

fn add_cors_headers(headers: &mut HeaderMap, origin: HeaderValue) {
    // Never `*` and never Access-Control-Allow-Credentials: the allowed origin is named, and
    // cookies or HTTP auth of the browser are never accepted with it.
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSED_HEADERS),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn loopback_servers_accept_loopback_hosts_only() {
        let policy = SecurityPolicy::for_bound_address(loopback(4327), Vec::new(), &[]).unwrap();
        for host in [
            "127.0.0.1:4327",
            "localhost:4327",
            "LOCALHOST",
            "[::1]:4327",
            "127.0.0.1",
        ] {
            assert!(policy.host_allowed(host), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:4327",
            "127.0.0.1:9999",
            "127.0.0.2:4327",
            "",
        ] {
            assert!(!policy.host_allowed(host), "{host}");
        }
    }

    #[test]
    fn non_loopback_binds_need_a_key() {
        let any = SocketAddr::from(([0, 0, 0, 0], 4327));
        assert_eq!(
            SecurityPolicy::for_bound_address(any, Vec::new(), &[]).unwrap_err(),
            SecurityConfigError::NonLoopbackWithoutKey { address: any.ip() }
        );
        let policy = SecurityPolicy::for_bound_address(any, vec!["k".into()], &[]).unwrap();
        assert!(policy.host_allowed("192.168.1.5:4327"));
    }

    #[test]
    fn wildcard_and_malformed_origins_are_refused() {
        for origin in ["*", "null", "http://*.example.com"] {
            assert!(matches!(
                SecurityPolicy::for_bound_address(loopback(1), Vec::new(), &[origin.into()]),
                Err(SecurityConfigError::WildcardOrigin { .. })
            ));
        }
        for origin in ["localhost:3000", "http://a/b", "http://"] {
            assert!(matches!(
                SecurityPolicy::for_bound_address(loopback(1), Vec::new(), &[origin.into()]),
                Err(SecurityConfigError::MalformedOrigin { .. })
            ));
        }
    }

    #[test]
    fn origins_are_same_origin_or_configured() {
        let policy = SecurityPolicy::for_bound_address(
            loopback(4327),
            Vec::new(),
            &["http://localhost:5173/".into()],
        )
        .unwrap();
        assert!(policy.origin_allowed("http://127.0.0.1:4327", "127.0.0.1:4327"));
        assert!(policy.origin_allowed("http://localhost:5173", "127.0.0.1:4327"));
        assert!(!policy.origin_allowed("http://evil.example", "127.0.0.1:4327"));
        assert!(!policy.origin_allowed("null", "127.0.0.1:4327"));
        assert!(policy.origin_allowed("http://localhost:4327", "127.0.0.1:4327"));
        assert!(!policy.origin_allowed("http://localhost", "127.0.0.1:4327"));
        assert!(!policy.origin_allowed("http://localhost:8080", "127.0.0.1:4327"));
    }

    #[test]
    fn keys_are_compared_exactly() {
        assert!(keys_match(b"secret", b"secret"));
        assert!(!keys_match(b"secret", b"secreT"));
        assert!(!keys_match(b"secret", b"secret2"));
        assert!(!keys_match(b"secret", b"secre"));
        assert!(!keys_match(b"secret", b""));
    }

    #[test]
    fn bearer_keys_are_read_from_authorization() {
        let policy =
            SecurityPolicy::for_bound_address(loopback(1), vec!["sk-local".into()], &[]).unwrap();
        let mut headers = HeaderMap::new();
        assert!(policy.key_accepted(&headers).is_err());
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer sk-local"),
        );
        assert!(policy.key_accepted(&headers).is_ok());
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  sk-local "),
        );
        assert!(policy.key_accepted(&headers).is_ok());
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic sk-local"),
        );
        assert!(policy.key_accepted(&headers).is_err());
    }

    #[test]
    fn any_of_several_keys_is_accepted() {
        let policy = SecurityPolicy::for_bound_address(
            loopback(1),
            vec!["desktop-token".into(), "sk-user".into()],
            &[],
        )
        .unwrap();
        assert!(policy.api_key_required());
        for (presented, accepted) in [
            ("Bearer desktop-token", true),
            ("Bearer sk-user", true),
            ("Bearer sk-use", false),
            ("Bearer desktop-tokensk-user", false),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, HeaderValue::from_static(presented));
            assert_eq!(
                policy.key_accepted(&headers).is_ok(),
                accepted,
                "{presented}"
            );
        }
        assert_eq!(
            SecurityPolicy::for_bound_address(loopback(1), vec!["k".into(), String::new()], &[])
                .unwrap_err(),
            SecurityConfigError::EmptyApiKey
        );
        assert!(
            !SecurityPolicy::for_bound_address(loopback(1), Vec::new(), &[])
                .unwrap()
                .api_key_required()
        );
    }
}
