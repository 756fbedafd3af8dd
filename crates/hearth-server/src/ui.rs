//! The web UI's static files, embedded at compile time from `ui/dist` (see `build.rs`).
//!
//! `GET /` is `index.html`, `GET /assets/…` and other files are served as they are, and an
//! unknown non-API path whose request accepts HTML (a client-side route like `/chat/3`) gets
//! `index.html`, so reloading any page of the UI works. Static files need no API key (they
//! hold no secret; the desktop's token reaches the page through the shell, not the server),
//! but the Host and Origin checks still apply. Every UI response carries a strict Content
//! Security Policy ([`CONTENT_SECURITY_POLICY`]): no inline script, nothing from another
//! origin, so even markdown a model wrote that slipped past the sanitizer could not run.
//! A server built before the UI answers `/` with a page saying how to build it.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

include!(concat!(env!("OUT_DIR"), "/ui_assets.rs"));

/// The Content Security Policy of every UI response (docs/ui-contract.md).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
/// The UI's entry page.
pub const INDEX_FILE: &str = "index.html";
/// Vite puts content-hashed files here: a changed file gets a new name, so they are cached
/// for good.
const HASHED_ASSETS_PREFIX: &str = "assets/";
/// Cache-Control of content-hashed assets (a year: the longest browsers honour).
const IMMUTABLE_CACHE: &str = "public, max-age=31536000, immutable";
/// Cache-Control of everything else: the browser asks again, so a new build shows at once.
const REVALIDATE_CACHE: &str = "no-cache";
/// Path prefixes of the API: never answered with a UI file, and never exempt from the key.
const API_PREFIXES: &[&str] = &["/api", "/v1"];
/// Exact API paths outside those prefixes.
const API_PATHS: &[&str] = &["/health", "/metrics"];

/// What `/` shows when the server was built without `ui/dist`.
pub const NOT_BUILT_PAGE: &str = "<!doctype html>
<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Hearth: the UI was not built</title></head>
<body>
<h1>Hearth's web UI was not built</h1>
<p>The API works (for example <code>GET /v1/models</code>), but this server was compiled before
the web UI existed. Build the UI, then rebuild Hearth:</p>
<pre>cd ui &amp;&amp; npm ci &amp;&amp; npm run build
cd .. &amp;&amp; cargo build --release</pre>
</body></html>
";

/// A set of UI files: `(path relative to ui/dist, contents)`.
#[derive(Debug, Clone, Copy)]
pub struct UiAssets {
    files: &'static [(&'static str, &'static [u8])],
}

impl UiAssets {
    /// The files embedded in this binary.
    pub fn embedded() -> Self {
        Self::new(EMBEDDED_UI)
    }

    /// A set of files (tests use a fake one).
    pub const fn new(files: &'static [(&'static str, &'static [u8])]) -> Self {
        Self { files }
    }

    fn get(&self, path: &str) -> Option<&'static [u8]> {
        self.files
            .iter()
            .find(|(name, _)| *name == path)
            .map(|(_, bytes)| *bytes)
    }

    /// The answer to a GET of `path`, or `None` when it is not the UI's (a 404 of the API).
    pub fn respond(&self, path: &str, accepts_html: bool) -> Option<Response> {
        if is_api_path(path) {
            return None;
        }
        let relative = path.trim_start_matches('/');
        let relative = if relative.is_empty() {
            INDEX_FILE
        } else {
            relative
        };
        if let Some(bytes) = self.get(relative) {
            return Some(file_response(relative, bytes));
        }
        let wants_page = relative == INDEX_FILE || accepts_html;
        if !wants_page {
            return None;
        }
        Some(match self.get(INDEX_FILE) {
            Some(index) => file_response(INDEX_FILE, index),
            None => with_ui_headers(
                (
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    NOT_BUILT_PAGE,
                )
                    .into_response(),
                REVALIDATE_CACHE,
            ),
        })
    }
}

/// Whether `path` belongs to the API (`/api…`, `/v1…`, `/health`, `/metrics`).
pub fn is_api_path(path: &str) -> bool {
    API_PATHS.contains(&path)
        || API_PREFIXES.iter().any(|prefix| {
            path.strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
}

/// Whether a request that matched no API route may be answered without a key: a GET or HEAD
/// of a path outside the API.
pub fn is_static_request(method: &Method, path: &str) -> bool {
    (method == Method::GET || method == Method::HEAD) && !is_api_path(path)
}

/// Whether the client takes an HTML page (a browser navigating).
fn accepts_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.to_ascii_lowercase().contains("text/html"))
}

/// The router's fallback: UI files for GET and HEAD, the API's 404 for everything else.
pub async fn fallback(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    if is_static_request(&method, uri.path()) {
        if let Some(response) = UiAssets::embedded().respond(uri.path(), accepts_html(&headers)) {
            return response;
        }
    }
    crate::handlers::not_found().await.into_response()
}

fn file_response(path: &str, bytes: &'static [u8]) -> Response {
    let cache = if path.starts_with(HASHED_ASSETS_PREFIX) {
        IMMUTABLE_CACHE
    } else {
        REVALIDATE_CACHE
    };
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(path)),
    );
    with_ui_headers(response, cache)
}

fn with_ui_headers(mut response: Response, cache: &'static str) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}

/// The media type of a UI file, by extension.
fn content_type(path: &str) -> &'static str {
    let extension = path
        .rsplit_once('.')
        .map(|(_, extension)| extension.to_ascii_lowercase())
        .unwrap_or_default();
    match extension.as_str() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        "txt" => "text/plain; charset=utf-8",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static FAKE_DIST: &[(&str, &[u8])] = &[
        ("assets/index-abc123.css", b"body{}"),
        ("assets/index-abc123.js", b"console.log(1)"),
        ("favicon.svg", b"<svg/>"),
        ("index.html", b"<!doctype html><title>Hearth</title>"),
    ];
    const BUILT: UiAssets = UiAssets::new(FAKE_DIST);
    const NOT_BUILT: UiAssets = UiAssets::new(&[]);

    async fn body_of(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn header_of(response: &Response, name: header::HeaderName) -> &str {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
    }

    #[tokio::test]
    async fn the_root_is_index_html_with_the_ui_headers() {
        let response = BUILT.respond("/", false).unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            header_of(&response, header::CONTENT_TYPE),
            "text/html; charset=utf-8"
        );
        assert_eq!(
            header_of(&response, header::CONTENT_SECURITY_POLICY),
            CONTENT_SECURITY_POLICY
        );
        assert_eq!(
            header_of(&response, header::X_CONTENT_TYPE_OPTIONS),
            "nosniff"
        );
        assert_eq!(header_of(&response, header::REFERRER_POLICY), "no-referrer");
        assert_eq!(header_of(&response, header::CACHE_CONTROL), "no-cache");
        assert!(body_of(response).await.contains("<title>Hearth</title>"));
    }

    #[tokio::test]
    async fn assets_are_served_with_their_type_and_cached_for_good() {
        let response = BUILT.respond("/assets/index-abc123.js", false).unwrap();
        assert_eq!(
            header_of(&response, header::CONTENT_TYPE),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(header_of(&response, header::CACHE_CONTROL), IMMUTABLE_CACHE);
        assert_eq!(body_of(response).await, "console.log(1)");
        let css = BUILT.respond("/assets/index-abc123.css", false).unwrap();
        assert_eq!(
            header_of(&css, header::CONTENT_TYPE),
            "text/css; charset=utf-8"
        );
        let icon = BUILT.respond("/favicon.svg", true).unwrap();
        assert_eq!(header_of(&icon, header::CONTENT_TYPE), "image/svg+xml");
        assert_eq!(header_of(&icon, header::CACHE_CONTROL), "no-cache");
    }

    #[tokio::test]
    async fn client_side_routes_that_accept_html_get_index_html() {
        let response = BUILT.respond("/chat/3", true).unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(body_of(response).await.contains("<title>Hearth</title>"));
        // A missing script is a 404, not a page the browser would try to run.
        assert!(BUILT.respond("/assets/missing.js", false).is_none());
        assert!(BUILT.respond("/chat/3", false).is_none());
    }

    #[test]
    fn api_paths_are_never_ui_files() {
        for path in [
            "/api/conversations",
            "/api",
            "/v1/models",
            "/v1",
            "/health",
            "/metrics",
        ] {
            assert!(BUILT.respond(path, true).is_none(), "{path}");
            assert!(!is_static_request(&Method::GET, path), "{path}");
        }
        for path in ["/", "/chat/3", "/apis", "/v1beta", "/assets/x.js"] {
            assert!(is_static_request(&Method::GET, path), "{path}");
            assert!(is_static_request(&Method::HEAD, path), "{path}");
            assert!(!is_static_request(&Method::POST, path), "{path}");
        }
    }

    #[tokio::test]
    async fn an_unbuilt_ui_answers_with_how_to_build_it() {
        assert!(NOT_BUILT.get(INDEX_FILE).is_none());
        assert!(BUILT.get(INDEX_FILE).is_some());
        let response = NOT_BUILT.respond("/", false).unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            header_of(&response, header::CONTENT_SECURITY_POLICY),
            CONTENT_SECURITY_POLICY
        );
        assert!(body_of(response).await.contains("npm run build"));
        assert!(NOT_BUILT.respond("/chat/1", true).is_some());
        assert!(NOT_BUILT.respond("/assets/index.js", false).is_none());
    }

    #[test]
    fn content_types_follow_the_extension() {
        assert_eq!(content_type("a/b.WOFF2"), "font/woff2");
        assert_eq!(content_type("noextension"), "application/octet-stream");
        assert_eq!(content_type("x.json"), "application/json");
    }
}
