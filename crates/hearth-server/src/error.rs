//! The one error type of the HTTP layer, rendered as OpenAI's error object
//! `{"error":{"message","type","param","code"}}` with the matching status.
//!
//! Deterministic failures (a bad field, an unknown model, a prompt that does not fit) are 4xx
//! so clients do not retry them; 5xx (and 503 with `Retry-After`) are for what may pass.
//! Messages never carry a file-system path: anything that comes from the engine goes through
//! [`redact_paths`] first.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hearth_protocol::{ErrorKind, WorkerError};
use hearth_supervisor::{RemoteFailure, SupervisorError};
use serde::Serialize;

/// OpenAI's `type` for a request the client must change.
pub const TYPE_INVALID_REQUEST: &str = "invalid_request_error";
/// OpenAI's `type` for a missing or wrong API key.
pub const TYPE_AUTHENTICATION: &str = "authentication_error";
/// OpenAI's `type` for a request refused by policy (foreign Host or Origin).
pub const TYPE_PERMISSION: &str = "permission_error";
/// OpenAI's `type` for failures on the server's side.
pub const TYPE_SERVER: &str = "server_error";

/// Seconds a client should wait before retrying when the queue is full.
pub const QUEUE_FULL_RETRY_AFTER_SECS: u32 = 1;
/// Seconds a client should wait before retrying while a model loads.
pub const LOADING_RETRY_AFTER_SECS: u32 = 1;

/// An API failure: status, OpenAI error fields, and an optional `Retry-After`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub error_type: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
    pub retry_after_secs: Option<u32>,
    /// The token counts of `context_length_exceeded`, sent as extra members of the object.
    pub n_prompt_tokens: Option<u32>,
    pub n_ctx: Option<u32>,
}

/// OpenAI's error body: `{"error": {...}}`.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorBody {
    pub error: ErrorObject,
}

/// OpenAI's error object, with `context_length_exceeded`'s token counts when there are any.
/// Fields in sorted order, as the `json!` object it replaced sent them ([`crate::wire`]).
#[derive(Debug, Clone, Serialize)]
pub struct ErrorObject {
    pub code: Option<&'static str>,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_ctx: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_prompt_tokens: Option<u32>,
    pub param: Option<String>,
    #[serde(rename = "type")]
    pub error_type: &'static str,
}

impl ApiError {
    pub fn new(status: StatusCode, error_type: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            error_type,
            param: None,
            code: None,
            retry_after_secs: None,
            n_prompt_tokens: None,
            n_ctx: None,
        }
    }

    /// 400 for an invalid field, naming it in `param`.
    pub fn invalid_param(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, TYPE_INVALID_REQUEST, message)
            .with_param(param)
            .with_code("invalid_value")
    }

    /// 400 for a request that is wrong as a whole (bad JSON, not an object).
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, TYPE_INVALID_REQUEST, message).with_code(code)
    }

    /// 404 for a model that is neither given to `--model` nor installed.
    pub fn model_not_found(requested: &str) -> Self {
        // Echo the name only when it is a plain model id: a name that looks like a path is
        // not repeated back (no message carries a path).
        let message = if looks_like_model_id(requested) {
            format!("The model `{requested}` does not exist or is not installed. GET /v1/models lists the models this server has.")
        } else {
            "The requested model does not exist or is not installed. GET /v1/models lists the models this server has.".to_string()
        };
        Self::new(StatusCode::NOT_FOUND, TYPE_INVALID_REQUEST, message)
            .with_param("model")
            .with_code("model_not_found")
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, TYPE_AUTHENTICATION, message)
            .with_code("invalid_api_key")
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, TYPE_PERMISSION, message).with_code(code)
    }

    pub fn payload_too_large(limit_bytes: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            TYPE_INVALID_REQUEST,
            format!("The request body is larger than the limit of {limit_bytes} bytes."),
        )
        .with_code("request_too_large")
    }

    /// 503 with `Retry-After`: the server is busy or loading and the same request will work
    /// later.
    pub fn unavailable(
        code: &'static str,
        message: impl Into<String>,
        retry_after_secs: u32,
    ) -> Self {
        let mut error =
            Self::new(StatusCode::SERVICE_UNAVAILABLE, TYPE_SERVER, message).with_code(code);
        error.retry_after_secs = Some(retry_after_secs);
        error
    }

    pub fn internal(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, TYPE_SERVER, message).with_code(code)
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// The error object: `{"message","type","param","code"}`, and the token counts if any.
    pub fn object(&self) -> ErrorObject {
        ErrorObject {
            code: self.code,
            message: self.message.clone(),
            n_ctx: self.n_ctx,
            n_prompt_tokens: self.n_prompt_tokens,
            param: self.param.clone(),
            error_type: self.error_type,
        }
    }

    /// The body: `{"error": <the object>}`.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.object(),
        }
    }

    /// Maps a failure of the engine (through the supervisor) to an API error. `prompt_param`
    /// is the field that holds the prompt (`messages` or `prompt`).
    pub fn from_supervisor(error: SupervisorError, prompt_param: &str) -> Self {
        match error {
            SupervisorError::Worker(worker) => Self::from_worker(worker, prompt_param),
            SupervisorError::WorkerCrashed { status } => Self::internal(
                "model_crashed",
                format!(
                    "The model crashed ({}). The engine was restarted; retry the request.",
                    redact_paths(&status)
                ),
            ),
            SupervisorError::NoModelLoaded => Self::unavailable(
                "model_not_loaded",
                "The model is not loaded at the moment; retry shortly.",
                LOADING_RETRY_AFTER_SECS,
            ),
            // Spawn and handshake failures can name the binary's path: say what happened
            // without it (the server's log has the details).
            SupervisorError::Spawn { .. } | SupervisorError::Handshake(_) => {
                tracing::error!(%error, "engine worker unavailable");
                Self::internal(
                    "engine_unavailable",
                    "The engine process could not be started. See the server's log.",
                )
            }
            SupervisorError::Protocol(_) => {
                tracing::error!(%error, "engine protocol error");
                Self::internal("engine_error", "The engine sent an unexpected reply.")
            }
            SupervisorError::Remote {
                provider,
                failure,
                message,
            } => Self::from_remote(&provider, failure, &message),
        }
    }

    /// A remote provider's failure, named: the client's own mistakes (4xx but a refused key)
    /// keep their status; a remote that is down, slow or broken is 502/504.
    fn from_remote(provider: &str, failure: RemoteFailure, message: &str) -> Self {
        let message = redact_paths(message);
        match failure {
            RemoteFailure::Unreachable => Self::new(
                StatusCode::BAD_GATEWAY,
                TYPE_SERVER,
                format!("The provider `{provider}` cannot be reached: {message}."),
            )
            .with_code("provider_unreachable"),
            RemoteFailure::TimedOut => Self::new(
                StatusCode::GATEWAY_TIMEOUT,
                TYPE_SERVER,
                format!("The provider `{provider}` did not answer in time: {message}."),
            )
            .with_code("provider_timeout"),
            RemoteFailure::Status(status @ (400 | 404 | 413 | 422 | 429)) => Self::new(
                StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
                if status == 429 {
                    TYPE_SERVER
                } else {
                    TYPE_INVALID_REQUEST
                },
                format!("The provider `{provider}` refused the request: {message}"),
            )
            .with_code("provider_refused"),
            RemoteFailure::Status(_) | RemoteFailure::Broken => Self::new(
                StatusCode::BAD_GATEWAY,
                TYPE_SERVER,
                format!("The provider `{provider}` failed: {message}"),
            )
            .with_code("provider_error"),
        }
    }

    fn from_worker(error: WorkerError, prompt_param: &str) -> Self {
        let message = redact_paths(&error.message);
        match error.kind {
            ErrorKind::ContextLengthExceeded => {
                let mut api = Self::new(
                    StatusCode::BAD_REQUEST,
                    TYPE_INVALID_REQUEST,
                    match (error.prompt_tokens, error.n_ctx) {
                        (Some(prompt_tokens), Some(n_ctx)) => format!(
                            "This model's maximum context length is {n_ctx} tokens. However, your {prompt_param} resulted in {prompt_tokens} tokens. Please reduce the length of the {prompt_param}."
                        ),
                        _ => message,
                    },
                )
                .with_param(prompt_param)
                .with_code("context_length_exceeded");
                api.n_prompt_tokens = error.prompt_tokens;
                api.n_ctx = error.n_ctx;
                api
            }
            ErrorKind::QueueFull => Self::unavailable(
                "queue_full",
                format!("The server is busy ({message}); retry shortly."),
                QUEUE_FULL_RETRY_AFTER_SECS,
            ),
            ErrorKind::InvalidConstraint => {
                Self::invalid_param("response_format", message).with_code("invalid_response_format")
            }
            // Fields are validated before the engine sees them; what it still refuses is the
            // prompt itself (a NUL character, token ids outside the vocabulary, nothing to
            // generate from).
            ErrorKind::InvalidRequest => {
                Self::invalid_param(prompt_param, message).with_code("invalid_prompt")
            }
            ErrorKind::TemplateFailed => {
                Self::invalid_param(prompt_param, message).with_code("template_error")
            }
            ErrorKind::FileMissing => {
                Self::new(StatusCode::NOT_FOUND, TYPE_INVALID_REQUEST, message)
                    .with_param("model")
                    .with_code("model_not_found")
            }
            ErrorKind::NotGguf | ErrorKind::UnsupportedArchitecture | ErrorKind::LoadFailed => {
                Self::invalid_param("model", message).with_code("model_load_failed")
            }
            // Memory may be freed by an unloading model: worth a retry, later.
            ErrorKind::OutOfMemory => {
                Self::unavailable("out_of_memory", message, LOADING_RETRY_AFTER_SECS * 5)
            }
            ErrorKind::NoModelLoaded => {
                Self::unavailable("model_not_loaded", message, LOADING_RETRY_AFTER_SECS)
            }
            ErrorKind::DecodeFailed | ErrorKind::DuplicateRequest => {
                Self::internal("engine_error", message)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after_secs {
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.status)
    }
}

impl std::error::Error for ApiError {}

/// True when `name` could be a model id (letters, digits, `-`, `_`, `.`, `:`), so it is safe to
/// repeat in a message.
fn looks_like_model_id(name: &str) -> bool {
    const MAX_ECHOED_NAME_LEN: usize = 128;
    !name.is_empty()
        && name.len() <= MAX_ECHOED_NAME_LEN
        && !name.contains("..")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Removes what could identify the machine's user from a message: the home directory and any
/// absolute path (replaced by its last component). The engine already reports file names only;
/// this is the second line of defence.
pub fn redact_paths(message: &str) -> String {
    let mut redacted = message.to_string();
    if let Some(home) = std::env::var_os("HOME").and_then(|h| h.into_string().ok()) {
        if home.len() > 1 {
            redacted = redacted.replace(&home, "~");
        }
    }
    redacted
        .split_inclusive(char::is_whitespace)
        .map(|word| {
            let trimmed = word.trim_start_matches(['(', '"', '\'', '`']);
            let is_path = (trimmed.starts_with('/') && trimmed[1..].contains('/'))
                || trimmed.starts_with("~/")
                || trimmed.get(1..3) == Some(":\\");
            if !is_path {
                return word.to_string();
            }
            let prefix = &word[..word.len() - trimmed.len()];
            let end = trimmed.trim_end_matches(|c: char| {
                c.is_whitespace() || matches!(c, ')' | '"' | '\'' | '`' | ',' | ':' | ';')
            });
            let suffix = &trimmed[end.len()..];
            let last = end.rsplit(['/', '\\']).next().unwrap_or("");
            format!("{prefix}{last}{suffix}")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_the_openai_error_object() {
        let error = ApiError::invalid_param("temperature", "temperature must be between 0 and 2");
        let body = serde_json::to_value(error.body()).unwrap();
        assert_eq!(body["error"]["param"], "temperature");
        assert_eq!(body["error"]["type"], TYPE_INVALID_REQUEST);
        assert_eq!(body["error"]["code"], "invalid_value");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("between"));
    }

    #[test]
    fn context_length_exceeded_carries_the_counts() {
        let mut worker = WorkerError::new(ErrorKind::ContextLengthExceeded, "too long");
        worker.prompt_tokens = Some(5000);
        worker.n_ctx = Some(2048);
        let error = ApiError::from_supervisor(SupervisorError::Worker(worker), "messages");
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        let body = serde_json::to_value(error.body()).unwrap();
        assert_eq!(body["error"]["code"], "context_length_exceeded");
        assert_eq!(body["error"]["n_prompt_tokens"], 5000);
        assert_eq!(body["error"]["n_ctx"], 2048);
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("5000") && message.contains("2048"),
            "{message}"
        );
    }

    #[test]
    fn queue_full_is_503_with_retry_after() {
        let worker = WorkerError::new(ErrorKind::QueueFull, "64 requests are already waiting");
        let response =
            ApiError::from_supervisor(SupervisorError::Worker(worker), "messages").into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }

    #[test]
    fn spawn_failures_do_not_leak_the_binary_path() {
        let error = SupervisorError::Spawn {
            program: "/home/alice/bin/hearth".into(),
            source: std::io::Error::other("no such file"),
        };
        let api = ApiError::from_supervisor(error, "messages");
        assert!(!api.message.contains("alice"), "{}", api.message);
    }

    #[test]
    fn paths_are_reduced_to_their_last_component() {
        assert_eq!(
            redact_paths("cannot open /home/bob/models/x.gguf: missing"),
            "cannot open x.gguf: missing"
        );
        assert_eq!(
            redact_paths("bad file (C:\\Users\\bob\\m.gguf)"),
            "bad file (m.gguf)"
        );
        assert_eq!(
            redact_paths("a/b is not a path here"),
            "a/b is not a path here"
        );
    }

    #[test]
    fn path_like_model_names_are_not_echoed() {
        let error = ApiError::model_not_found("../../etc/passwd");
        assert!(!error.message.contains("etc"), "{}", error.message);
        let error = ApiError::model_not_found("qwen3-4b");
        assert!(error.message.contains("qwen3-4b"));
    }
}

/// The most bytes of an error body read back to reshape it (errors are a few hundred bytes).
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// The part of the OpenAI error body that [`reshape_error_response`] keeps.
#[derive(Debug, serde::Deserialize)]
struct OpenAiErrorBody {
    error: OpenAiErrorMessage,
}

#[derive(Debug, serde::Deserialize)]
struct OpenAiErrorMessage {
    message: String,
}

/// Rewrites an error answer (the handlers', the security layer's, the body limit's: all in
/// OpenAI's shape) into another API's shape: `reshape` gets the status and the message and
/// returns the new JSON body. Answers that are not errors pass unchanged. Shared by the
/// listeners that speak another API (Anthropic's `/v1/messages`, Ollama's).
pub async fn reshape_error_response<T: Serialize>(
    response: Response,
    reshape: impl FnOnce(StatusCode, String) -> T,
) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_ERROR_BODY_BYTES)
        .await
        .unwrap_or_default();
    let message = serde_json::from_slice::<OpenAiErrorBody>(&bytes)
        .map(|body| body.error.message)
        .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
    let reshaped = serde_json::to_vec(&reshape(status, message)).unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, axum::body::Body::from(reshaped))
}
