//! HTTP requests with Hearth's URL policy: https everywhere, plain http only to loopback, every
//! redirect hop checked against the same policy before it is followed. Redirects are followed
//! here rather than inside the HTTP client so that no request ever reaches a refused URL.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use ureq::http::{Response, Uri};
use ureq::{Agent, Body};

use crate::error::{ModelsError, Result};

/// Redirect hops followed before giving up; the hub needs two at most (resolve, then CDN).
pub(crate) const MAX_REDIRECTS: u32 = 10;

/// What a request is for: downloads read the body; metadata look-ups use HEAD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestMethod {
    Get,
    Head,
}

/// Settings for [`Transport::new`].
#[derive(Debug, Clone)]
pub(crate) struct TransportSettings {
    pub connect_timeout: Duration,
    /// Longest wait for the next bytes, headers included: the stall timeout.
    pub read_timeout: Duration,
    pub user_agent: String,
    /// Bearer token, sent only to `token_host`.
    pub token: Option<String>,
    pub token_host: Option<String>,
}

/// Two HTTP agents: one that honours the proxy environment variables for the internet, and
/// one without proxy for loopback addresses (a corporate proxy cannot reach our 127.0.0.1).
#[derive(Debug, Clone)]
pub(crate) struct Transport {
    internet_agent: Agent,
    loopback_agent: Agent,
    token: Option<String>,
    token_host: Option<String>,
}

impl Transport {
    pub fn new(settings: &TransportSettings) -> Transport {
        let build = |use_proxy_environment: bool| -> Agent {
            let builder = Agent::config_builder()
                // 4xx and 5xx come back as responses so that we can explain them.
                .http_status_as_error(false)
                // Redirects are followed by `send`, which checks each hop first.
                .max_redirects(0)
                .timeout_connect(Some(settings.connect_timeout))
                .timeout_per_read(Some(settings.read_timeout))
                .user_agent(settings.user_agent.as_str());
            let builder = if use_proxy_environment {
                builder
            } else {
                builder.proxy(None)
            };
            builder.build().into()
        };
        Transport {
            internet_agent: build(true),
            loopback_agent: build(false),
            token: settings.token.clone(),
            token_host: settings.token_host.clone(),
        }
    }

    /// Sends a request, following redirects that the URL policy allows, and returns the final
    /// URL with its response. With `stop_at_linked_metadata`, a redirect that carries the hub's
    /// `X-Linked-Size` header is returned instead of followed (it holds the file's metadata).
    pub fn send(
        &self,
        method: RequestMethod,
        url: &str,
        range: Option<ByteRange>,
        stop_at_linked_metadata: bool,
    ) -> Result<(String, Response<Body>)> {
        let mut current_url = url.to_string();
        let mut current_uri = check_url_allowed(&current_url)?;
        let starts_local = is_local_target(uri_host(&current_uri));
        for _ in 0..=MAX_REDIRECTS {
            let response = self.send_once(method, &current_url, &current_uri, range)?;
            let status = response.status().as_u16();
            let is_redirect = matches!(status, 301 | 302 | 303 | 307 | 308);
            if !is_redirect
                || (stop_at_linked_metadata && response.headers().contains_key("x-linked-size"))
            {
                return Ok((current_url, response));
            }
            let location = response
                .headers()
                .get("location")
                .and_then(|value| value.to_str().ok())
                .ok_or_else(|| ModelsError::InvalidUrl {
                    url: current_url.clone(),
                    reason: format!("HTTP {status} redirect without a usable Location header"),
                })?;
            let next_url = resolve_location(&current_url, &current_uri, location)?;
            current_uri = check_redirect_allowed(starts_local, &current_url, &next_url)?;
            current_url = next_url;
        }
        Err(ModelsError::TooManyRedirects {
            url: url.to_string(),
            limit: MAX_REDIRECTS,
        })
    }

    fn send_once(
        &self,
        method: RequestMethod,
        url: &str,
        uri: &Uri,
        range: Option<ByteRange>,
    ) -> Result<Response<Body>> {
        let host = uri_host(uri);
        let agent = if is_loopback_host(host) {
            &self.loopback_agent
        } else {
            &self.internet_agent
        };
        let mut request = match method {
            RequestMethod::Get => agent.get(url),
            RequestMethod::Head => agent.head(url),
        }
        // Byte offsets in Range must refer to the file itself, never to a compressed form.
        .header("Accept-Encoding", "identity");
        match range {
            Some(ByteRange {
                start,
                last: Some(last),
            }) => request = request.header("Range", format!("bytes={start}-{last}")),
            Some(ByteRange { start, last: None }) if start > 0 => {
                request = request.header("Range", format!("bytes={start}-"));
            }
            _ => {}
        }
        // The token is for the hub only: a CDN or any other host the hub redirects to must not
        // see it.
        if let (Some(token), Some(token_host)) = (&self.token, &self.token_host) {
            if host.eq_ignore_ascii_case(token_host) {
                request = request.header("Authorization", format!("Bearer {token}"));
            }
        }
        request.call().map_err(|error| map_ureq_error(url, error))
    }
}

/// The bytes a request asks for: from `start` to `last` (inclusive), or to the end of the file
/// when `last` is `None`. A range from 0 to the end sends no `Range` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub last: Option<u64>,
}

/// Turns a client error into ours; timeouts while waiting for bytes are stalls.
pub(crate) fn map_ureq_error(url: &str, error: ureq::Error) -> ModelsError {
    match error {
        ureq::Error::Timeout(ureq::Timeout::Connect | ureq::Timeout::Resolve) => {
            ModelsError::Network {
                url: url.to_string(),
                reason: "connecting timed out".to_string(),
            }
        }
        ureq::Error::Timeout(_) => ModelsError::Stalled {
            url: url.to_string(),
            // The caller knows the configured timeout and replaces this placeholder.
            stall_timeout: Duration::ZERO,
        },
        ureq::Error::Io(io_error) => map_io_error(url, io_error),
        other => ModelsError::Network {
            url: url.to_string(),
            reason: other.to_string(),
        },
    }
}

/// Maps a read error from a response body.
pub(crate) fn map_io_error(url: &str, io_error: std::io::Error) -> ModelsError {
    use std::io::ErrorKind;
    let is_wrapped_client_error = io_error
        .get_ref()
        .is_some_and(|inner| inner.is::<ureq::Error>());
    if is_wrapped_client_error {
        return map_ureq_error(url, ureq::Error::from(io_error));
    }
    match io_error.kind() {
        ErrorKind::TimedOut | ErrorKind::WouldBlock => ModelsError::Stalled {
            url: url.to_string(),
            stall_timeout: Duration::ZERO,
        },
        _ => ModelsError::Network {
            url: url.to_string(),
            reason: io_error.to_string(),
        },
    }
}

/// The host of a URI without IPv6 brackets.
pub(crate) fn uri_host(uri: &Uri) -> &str {
    let host = uri.host().unwrap_or("");
    host.strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(host)
}

/// Whether `host` is this machine: `localhost`, 127.0.0.0/8 or `::1`.
pub(crate) fn is_loopback_host(host: &str) -> bool {
    let host = host
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(host);
    let host = host.strip_suffix('.').unwrap_or(host);
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<Ipv4Addr>()
            .is_ok_and(|address| address.is_loopback())
        || host
            .parse::<Ipv6Addr>()
            .is_ok_and(|address| address.is_loopback())
}

/// Whether connecting to `host` reaches this machine: a loopback name or address, or the
/// unspecified address (`0.0.0.0`, `::`), which Linux connects to the local host.
pub(crate) fn is_local_target(host: &str) -> bool {
    let bare = host
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(host);
    is_loopback_host(host)
        || bare
            .parse::<Ipv4Addr>()
            .is_ok_and(|address| address.is_unspecified())
        || bare.parse::<Ipv6Addr>().is_ok_and(|address| {
            address.is_unspecified()
                || address
                    .to_ipv4_mapped()
                    .is_some_and(|v4| v4.is_loopback() || v4.is_unspecified())
        })
}

/// The policy for one redirect hop of a request that started at a local (`starts_local`) or
/// remote URL: the URL policy, and no hop from another machine to this one, so a hub or CDN
/// cannot make Hearth send requests to the user's own local services.
pub(crate) fn check_redirect_allowed(starts_local: bool, from: &str, to: &str) -> Result<Uri> {
    let uri = match check_url_allowed(to) {
        Ok(uri) => uri,
        Err(ModelsError::InsecureUrl { .. }) => {
            return Err(ModelsError::InsecureRedirect {
                from: from.to_string(),
                to: to.to_string(),
            })
        }
        Err(error) => return Err(error),
    };
    if !starts_local && is_local_target(uri_host(&uri)) {
        return Err(ModelsError::LocalRedirect {
            from: from.to_string(),
            to: to.to_string(),
        });
    }
    Ok(uri)
}

/// Parses `url` and applies the policy: https anywhere, http only to loopback, no other
/// scheme, no credentials embedded in the URL.
pub(crate) fn check_url_allowed(url: &str) -> Result<Uri> {
    let invalid = |reason: &str| ModelsError::InvalidUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let uri: Uri = url.parse().map_err(|_| invalid("it cannot be parsed"))?;
    let authority = uri.authority().ok_or_else(|| invalid("it has no host"))?;
    if authority.as_str().contains('@') {
        return Err(invalid("credentials inside URLs are not accepted"));
    }
    match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
        Some("https") => Ok(uri),
        Some("http") if is_loopback_host(uri_host(&uri)) => Ok(uri),
        Some("http") => Err(ModelsError::InsecureUrl {
            url: url.to_string(),
        }),
        _ => Err(invalid("only https URLs are supported")),
    }
}

/// Resolves a redirect's `Location` against the URL that answered with it.
pub(crate) fn resolve_location(base_url: &str, base_uri: &Uri, location: &str) -> Result<String> {
    let location = location.trim();
    let has_scheme = location.split_once("://").is_some_and(|(scheme, _)| {
        !scheme.is_empty()
            && scheme
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'-' | b'.'))
    });
    if has_scheme {
        return Ok(location.to_string());
    }
    let (Some(scheme), Some(authority)) = (base_uri.scheme_str(), base_uri.authority()) else {
        return Err(ModelsError::InvalidUrl {
            url: base_url.to_string(),
            reason: "a relative redirect needs an absolute base URL".to_string(),
        });
    };
    if location.starts_with("//") {
        return Ok(format!("{scheme}:{location}"));
    }
    if location.starts_with('/') {
        return Ok(format!("{scheme}://{authority}{location}"));
    }
    let base_path = base_uri.path();
    let directory = &base_path[..base_path.rfind('/').map_or(0, |slash| slash + 1)];
    let directory = if directory.is_empty() { "/" } else { directory };
    Ok(format!("{scheme}://{authority}{directory}{location}"))
}

/// A response header's value as trimmed text; `None` when it is absent or not visible ASCII.
pub(crate) fn header_text<'a>(response: &'a Response<Body>, name: &str) -> Option<&'a str> {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_policy() {
        for allowed in [
            "https://huggingface.co/a/b/resolve/main/c.gguf",
            "http://127.0.0.1:8080/x",
            "http://127.1.2.3/x",
            "http://localhost:1/x",
            "http://LOCALHOST/x",
            "http://[::1]:9/x",
        ] {
            assert!(check_url_allowed(allowed).is_ok(), "{allowed}");
        }
        for insecure in [
            "http://huggingface.co/x",
            "http://192.0.2.1/x",
            "http://[2001:db8::1]/x",
            "http://localhost.example.com/x",
        ] {
            assert!(
                matches!(
                    check_url_allowed(insecure),
                    Err(ModelsError::InsecureUrl { .. })
                ),
                "{insecure}"
            );
        }
        for invalid in [
            "ftp://example.com/x",
            "file:///etc/passwd",
            "https://user:secret@example.com/x",
            "not a url",
            "/relative",
        ] {
            assert!(
                matches!(
                    check_url_allowed(invalid),
                    Err(ModelsError::InvalidUrl { .. })
                ),
                "{invalid}"
            );
        }
    }

    #[test]
    fn only_a_local_endpoint_may_redirect_to_a_local_address() {
        let from = "https://hub.example/a.gguf";
        for local in [
            "https://127.0.0.1/x",
            "http://127.0.0.1:8080/x",
            "https://localhost/x",
            "http://[::1]/x",
            "https://0.0.0.0/x",
            "https://[::]/x",
            "https://[::ffff:127.0.0.1]/x",
        ] {
            assert!(
                matches!(
                    check_redirect_allowed(false, from, local),
                    Err(ModelsError::LocalRedirect { .. })
                ),
                "{local}"
            );
        }
        // A loopback endpoint (a test hub, a local mirror) may redirect within the machine.
        for local in [
            "http://127.0.0.1:8080/x",
            "https://localhost/x",
            "http://[::1]/x",
        ] {
            assert!(
                check_redirect_allowed(true, "http://127.0.0.1:9/a", local).is_ok(),
                "{local}"
            );
        }
        assert!(check_redirect_allowed(false, from, "https://cdn.example/blob").is_ok());
        assert!(matches!(
            check_redirect_allowed(false, from, "http://cdn.example/blob"),
            Err(ModelsError::InsecureRedirect { .. })
        ));
    }

    #[test]
    fn redirect_locations() {
        let base = "https://hub.example/org/repo/resolve/main/dir/file.gguf?x=1";
        let uri: Uri = base.parse().unwrap();
        let resolve = |location: &str| resolve_location(base, &uri, location).unwrap();
        assert_eq!(
            resolve("https://cdn.example/blob"),
            "https://cdn.example/blob"
        );
        assert_eq!(resolve("//cdn.example/blob"), "https://cdn.example/blob");
        assert_eq!(
            resolve("/api/resolve-cache/x"),
            "https://hub.example/api/resolve-cache/x"
        );
        assert_eq!(
            resolve("other.gguf"),
            "https://hub.example/org/repo/resolve/main/dir/other.gguf"
        );
        assert_eq!(
            resolve("HTTP://insecure.example/x"),
            "HTTP://insecure.example/x"
        );
    }
}
