//! What one launch of the desktop app decides before the window opens, as plain functions:
//! the per-launch token, the keys the server accepts, the script that hands the token to the
//! UI, and which URLs the window may show. (The data directory, shared with the `hearth` CLI, is
//! `hearth_supervisor::process::data_dir`.)

use anyhow::Context;
use tauri::Url;

/// Bytes of randomness in the per-launch token (64 hex digits).
pub const TOKEN_BYTES: usize = 32;

/// A fresh per-launch token: [`TOKEN_BYTES`] random bytes from the operating system, in hex.
/// It lives only in this process and in the window's page: never on a command line, in the
/// environment or in a file.
pub fn new_token() -> anyhow::Result<String> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; TOKEN_BYTES];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("the operating system gave no random bytes for the token"))?;
    Ok(hex(&bytes))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(DIGITS[usize::from(byte >> 4)] as char);
        text.push(DIGITS[usize::from(byte & 0x0f)] as char);
    }
    text
}

/// The keys the server accepts: the window's token, and the user's own key from the settings
/// (so other programs configured with it work while the desktop app serves the API).
pub fn api_keys(token: &str, user_key: Option<&str>) -> Vec<String> {
    let mut keys = vec![token.to_string()];
    if let Some(user_key) = user_key.map(str::trim).filter(|key| !key.is_empty()) {
        if user_key != token {
            keys.push(user_key.to_string());
        }
    }
    keys
}

/// Where the window's web view keeps its storage (WebKit's cache, local storage, cookies, or
/// WebView2's user data folder): inside Hearth's data folder, private like the rest of it,
/// rather than the toolkit's default folder named after the app identifier, which no removal
/// of Hearth would ever clean and which would hold cached API answers outside the data folder.
/// (macOS's WKWebView ignores it and keeps its own per-app store.)
pub fn webview_data_dir(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("webview")
}

/// The one origin the window shows: the in-process server's.
pub fn app_origin(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// Whether the window may show `url`: only pages of the in-process server. Anything else
/// (a link in a model's answer, a redirect) never loads in the window, where it would see
/// the token.
pub fn is_app_url(url: &Url, port: u16) -> bool {
    url.scheme() == "http"
        && url.host_str() == Some("127.0.0.1")
        && url.port_or_known_default() == Some(port)
}

/// Whether the window may download `url`: files the UI made itself (a `blob:` URL of the
/// server's origin, as exports are) or that the server sends. Downloads land in the user's
/// Downloads folder, as in a browser.
pub fn is_app_download(url: &Url, port: u16) -> bool {
    if url.scheme() == "blob" {
        return Url::parse(url.path()).is_ok_and(|inner| is_app_url(&inner, port));
    }
    is_app_url(url, port)
}

/// Whether a URL the window refused is worth handing to the system's browser (web links only,
/// never `file:` or a custom scheme).
pub fn is_web_link(url: &Url) -> bool {
    matches!(url.scheme(), "http" | "https")
}

/// The script that runs at the start of every page the window loads, before the UI's own:
/// on the server's origin only, it sets `window.__HEARTH__ = {token}` (read-only) and makes
/// Ctrl+Q quit the app.
pub fn initialization_script(port: u16, token: &str) -> String {
    // Both values are JSON strings, so nothing in them can break out of the script.
    let origin = serde_json::Value::from(app_origin(port)).to_string();
    let token = serde_json::Value::from(token).to_string();
    format!(
        r#"(function () {{
  if (window.location.origin !== {origin}) return;
  Object.defineProperty(window, "__HEARTH__", {{
    value: Object.freeze({{ token: {token} }}),
    writable: false,
    configurable: false,
    enumerable: false
  }});
  window.addEventListener("keydown", function (event) {{
    if (event.ctrlKey && !event.altKey && !event.metaKey && (event.key === "q" || event.key === "Q")) {{
      event.preventDefault();
      window.__TAURI_INTERNALS__.invoke("quit");
    }}
  }}, true);
}})();
"#
    )
}

/// Opens a web link in the system's browser (the user clicked it; the window never shows
/// foreign pages). Failures are logged: there is nothing else to do about them.
pub fn open_in_browser(url: &Url) {
    #[cfg(target_os = "macos")]
    let mut command = std::process::Command::new("open");
    #[cfg(target_os = "windows")]
    let mut command = std::process::Command::new("explorer");
    #[cfg(not(any(target_os = "macos", target_os = "windows")))]
    let mut command = std::process::Command::new("xdg-open");
    command
        .arg(url.as_str())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    match command
        .spawn()
        .with_context(|| format!("cannot open {url} in the browser"))
    {
        // The opener hands the link over and exits; wait for it so it leaves no zombie.
        Ok(mut child) => {
            std::thread::spawn(move || child.wait());
        }
        Err(error) => tracing::warn!("{error:#}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_64_hex_digits_and_differ() {
        let first = new_token().unwrap();
        let second = new_token().unwrap();
        assert_eq!(first.len(), TOKEN_BYTES * 2);
        assert!(first
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_ne!(first, second);
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
    }

    #[test]
    fn the_users_key_is_accepted_beside_the_token() {
        assert_eq!(api_keys("t", None), vec!["t"]);
        assert_eq!(api_keys("t", Some("sk-user")), vec!["t", "sk-user"]);
        assert_eq!(api_keys("t", Some("  ")), vec!["t"]);
        assert_eq!(api_keys("t", Some("t")), vec!["t"]);
    }

    #[test]
    fn the_window_shows_only_the_servers_pages() {
        let url = |text: &str| Url::parse(text).unwrap();
        assert!(is_app_url(&url("http://127.0.0.1:4711/"), 4711));
        assert!(is_app_url(&url("http://127.0.0.1:4711/chat/3?x=1#y"), 4711));
        assert!(!is_app_url(&url("http://127.0.0.1:4712/"), 4711));
        assert!(!is_app_url(&url("http://localhost:4711/"), 4711));
        assert!(!is_app_url(&url("https://127.0.0.1:4711/"), 4711));
        assert!(!is_app_url(
            &url("http://127.0.0.1.evil.example:4711/"),
            4711
        ));
        assert!(!is_app_url(&url("file:///etc/passwd"), 4711));
        assert!(is_app_download(
            &url("blob:http://127.0.0.1:4711/0b6a3f1e-8d7c-4e0f-9a51-2f6c1d7e9b10"),
            4711
        ));
        assert!(is_app_download(&url("http://127.0.0.1:4711/x"), 4711));
        assert!(!is_app_download(
            &url("blob:http://127.0.0.1:4712/0b6a"),
            4711
        ));
        assert!(!is_app_download(
            &url("blob:https://evil.example/0b6a"),
            4711
        ));
        assert!(!is_app_download(&url("data:text/plain,hi"), 4711));
        assert!(is_web_link(&url("https://example.com/")));
        assert!(!is_web_link(&url("file:///etc/passwd")));
        assert!(!is_web_link(&url("javascript:alert(1)")));
    }

    #[test]
    fn the_script_sets_the_token_on_the_servers_origin_only() {
        let script = initialization_script(4711, "abc123");
        assert!(script.contains(r#"window.location.origin !== "http://127.0.0.1:4711""#));
        assert!(script.contains(r#"token: "abc123""#));
        assert!(script.contains(r#"invoke("quit")"#));
        // A hostile value stays inside its string.
        let hostile = initialization_script(1, "\"});alert(1);//");
        assert!(hostile.contains(r#"token: "\"});alert(1);//""#));
    }
}
