//! The desktop app as a user gets it: the built `hearth-desktop` binary on a virtual X display
//! (Xvfb), with a fresh data directory.
//!
//! It checks that the in-process server answers (on a free port when the API port from the
//! settings is taken), that the window paints the UI (a screenshot
//! is saved to `test-output/desktop/window.png` and must not be blank), that the UI's own API
//! calls were accepted (the per-launch token reached the page; checked through `/metrics` with
//! the user's key from the settings file, which the server accepts too), that a second launch
//! hands over to the first and exits (where a D-Bus daemon is installed), and that SIGTERM in
//! the middle of an answer (SmolLM2, imported through the API) quits cleanly: exit status 0
//! within a bounded time and no process of the app left behind, the engine worker included.
//! It prints the idle memory of the app and its WebKit processes (no model loaded), which the
//! README reports.
//!
//! Needs Xvfb, xwd (x11-apps) and ImageMagick's `convert`; skipped, with a message, only where
//! Xvfb is not installed.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_hearth-desktop");
/// The user's own API key, written to the settings file before launch.
const USER_KEY: &str = "desktop-test-user-key";
/// The virtual screen: larger than the window's first size, so the whole window shows.
const SCREEN: &str = "1400x900x24";
/// Displays tried for Xvfb, from this one up.
const FIRST_DISPLAY: u32 = 91;
const DISPLAYS_TRIED: u32 = 60;
/// How long the server, the painted window and the exit may take (a cold WebKit start on a
/// busy 2-core machine takes several seconds).
const SERVER_TIMEOUT: Duration = Duration::from_secs(60);
const PAINT_TIMEOUT: Duration = Duration::from_secs(90);
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);
const SECOND_LAUNCH_TIMEOUT: Duration = Duration::from_secs(45);
/// A blank window (or a bare root window) has a handful of colours; text and UI have hundreds.
const PAINTED_MIN_COLOURS: u64 = 24;
/// The app is idle once the UI's API calls have stopped for this long (its first page has
/// loaded, the probe behind `/api/system` has run); memory is measured then.
const QUIET_FOR: Duration = Duration::from_secs(4);
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long loading the model and the first tokens of an answer may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);
/// Tokens that must stream before the app is told to quit (it is mid-answer then).
const TOKENS_BEFORE_QUIT: usize = 3;
/// The README's goal for idle memory, in MiB.
const IDLE_MEMORY_GOAL_MIB: f64 = 150.0;

#[test]
fn desktop_window_starts_paints_and_quits_cleanly() {
    let started = Instant::now();
    if !on_path("Xvfb") {
        eprintln!(
            "SKIPPED desktop_window: Xvfb is not installed (apt-get install xvfb x11-apps imagemagick)"
        );
        return;
    }
    for tool in ["xwd", "convert"] {
        assert!(
            on_path(tool),
            "{tool} is needed for the screenshot (apt-get install x11-apps imagemagick)"
        );
    }
    let output_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("test-output/desktop");
    std::fs::create_dir_all(&output_dir).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let home = scratch.path().join("hearth-home");
    std::fs::create_dir_all(&home).unwrap();
    // The settings name the user's key and an API port that another program holds: the app
    // must serve on a free port instead.
    let port_taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = port_taken.local_addr().unwrap().port();
    std::fs::write(
        home.join("settings.json"),
        format!(r#"{{"api_key":"{USER_KEY}","api_port":{taken_port}}}"#),
    )
    .unwrap();

    let display = VirtualDisplay::start();
    let bus = SessionBus::start();
    let environment = AppEnvironment::new(scratch.path(), &home, &display, bus.as_ref());

    let log_path = output_dir.join("app.log");
    let mut app = Guarded(
        environment
            .command()
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .expect("cannot start hearth-desktop"),
    );
    let app_pid = app.0.id();
    let address = read_server_address(&mut app.0);
    assert!(
        address.ip().is_loopback() && address.port() != taken_port,
        "the app must serve on loopback, on a free port when the settings' port is taken: {address}"
    );
    let health = http_get(address, "/health", None);
    assert!(
        health.starts_with("HTTP/1.1 200"),
        "the server does not answer /health: {health}"
    );
    let index = http_get(address, "/", None);
    let serves_ui = index.starts_with("HTTP/1.1 200") && index.contains("<script");
    eprintln!(
        "server at {address} after {:.1} s; GET / {}",
        started.elapsed().as_secs_f64(),
        status_line(&index)
    );

    let screenshot = output_dir.join("window.png");
    let colours = wait_for_paint(&display, &screenshot, &mut app.0);
    wait_until_idle(address);
    let colours = take_screenshot(&display, &screenshot).unwrap_or(colours);
    assert!(
        colours >= PAINTED_MIN_COLOURS,
        "the window looks blank ({colours} colours): {}",
        screenshot.display()
    );
    eprintln!(
        "window painted after {:.1} s ({colours} colours): {}",
        started.elapsed().as_secs_f64(),
        screenshot.display()
    );

    // The web view keeps its storage inside Hearth's data folder, not in a folder of the
    // toolkit's named after the app (which removing Hearth would leave behind).
    assert!(
        home.join("webview").is_dir(),
        "the web view's storage is not in the data folder"
    );
    for base in ["data", "cache", "config"] {
        let outside = scratch.path().join(base).join("app.hearth.desktop");
        assert!(
            !outside.exists(),
            "the web view wrote outside the data folder: {}",
            outside.display()
        );
    }

    // The UI's own calls carried the token: none was refused, and (UI served) some succeeded.
    let metrics = http_get(address, "/metrics", Some(USER_KEY));
    assert!(
        metrics.starts_with("HTTP/1.1 200"),
        "the user's key from the settings is not accepted: {}",
        status_line(&metrics)
    );
    let api_calls = api_responses(&metrics);
    eprintln!("API responses so far (route, status: count): {api_calls:?}");
    let refused: Vec<_> = api_calls
        .iter()
        .filter(|((_, status), _)| status == "401")
        .collect();
    assert!(
        refused.is_empty(),
        "the UI's calls were refused: {refused:?}"
    );
    if serves_ui {
        assert!(
            api_calls.keys().any(|(_, status)| status.starts_with('2')),
            "the UI made no successful API call (did the token reach the page?)"
        );
    } else {
        eprintln!("the server serves no UI (ui/dist not built?): the token check is skipped");
    }

    let processes = process_tree(app_pid);
    let memory = MemoryReport::measure(&processes);
    memory.print(&output_dir.join("memory.txt"));

    if let Some(bus) = &bus {
        second_launch_hands_over(&environment, &mut app.0, bus);
    }

    // SIGTERM while an answer streams: a clean quit, within a bounded time, leaving nothing
    // behind (the engine worker included).
    let (_answer, answering) = start_an_answer(address);
    let mut processes = processes;
    for process in process_tree(app_pid) {
        if !processes.iter().any(|known| known.pid == process.pid) {
            processes.push(process);
        }
    }
    assert!(
        processes.iter().any(|p| p.is_engine_worker()),
        "no engine worker runs while an answer streams: {processes:?}"
    );
    eprintln!("answering ({answering}); sending SIGTERM");
    let quit_started = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &app_pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = wait_with_timeout(&mut app.0, EXIT_TIMEOUT).unwrap_or_else(|| {
        panic!("hearth-desktop did not exit within {EXIT_TIMEOUT:?} of SIGTERM")
    });
    eprintln!(
        "exited with {status} {:.1} s after SIGTERM",
        quit_started.elapsed().as_secs_f64()
    );
    assert!(status.success(), "hearth-desktop exited with {status}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut left: Vec<&ProcessInfo> = processes.iter().filter(|p| p.pid != app_pid).collect();
    while !left.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        left.retain(|process| process.still_running());
    }
    assert!(
        left.is_empty(),
        "processes of the app outlived it: {:?}",
        left.iter().map(|p| (p.pid, &p.name)).collect::<Vec<_>>()
    );
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        !log.contains("panicked"),
        "the app panicked: {}",
        log_path.display()
    );
    eprintln!(
        "desktop_window: {:.1} s in all",
        started.elapsed().as_secs_f64()
    );
}

/// Imports SmolLM2 (in place) and starts an answer in a new conversation; returns the open
/// stream once tokens arrive, and what arrived.
fn start_an_answer(address: SocketAddr) -> (TcpStream, String) {
    let model = hearth_testkit::smollm2();
    let imported = http_json(
        address,
        "/api/models/import",
        &serde_json::json!({"path": model, "in_place": true}),
    );
    let model_id = imported["id"]
        .as_str()
        .unwrap_or_else(|| panic!("the import answered no id: {imported}"))
        .to_string();
    let conversation = http_json(
        address,
        "/api/conversations",
        &serde_json::json!({"title": "quit while answering"}),
    );
    let conversation_id = match &conversation["id"] {
        serde_json::Value::String(id) => id.clone(),
        serde_json::Value::Number(id) => id.to_string(),
        other => panic!("the new conversation has no id: {other}"),
    };
    let body = serde_json::json!({
        "content": "Count from one to one thousand in words, one number per line.",
        "model": model_id,
    })
    .to_string();
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5)).unwrap();
    stream.set_read_timeout(Some(ANSWER_TIMEOUT)).unwrap();
    write!(
        stream,
        "POST /api/conversations/{conversation_id}/messages HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {USER_KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut tokens = 0;
    let mut seen = String::new();
    while tokens < TOKENS_BEFORE_QUIT {
        let mut line = String::new();
        let read = reader.read_line(&mut line).unwrap_or(0);
        assert!(
            read > 0,
            "the answer ended before {TOKENS_BEFORE_QUIT} tokens: {seen}"
        );
        if line.contains(r#""type":"token""#) {
            tokens += 1;
        }
        assert!(
            !line.contains(r#""type":"error""#),
            "the answer failed: {line}"
        );
        if seen.len() < 2000 {
            seen.push_str(&line);
        }
    }
    (stream, format!("{tokens} tokens in"))
}

/// A POST with the user's key and a JSON body; the JSON answer (2xx only).
fn http_json(address: SocketAddr, path: &str, body: &serde_json::Value) -> serde_json::Value {
    let body = body.to_string();
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {USER_KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = status_line(&response).to_string();
    assert!(status.starts_with("HTTP/1.1 2"), "POST {path}: {response}");
    let json = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    serde_json::from_str(json).unwrap_or_else(|error| panic!("POST {path}: {error}: {json}"))
}

/// A second launch finds the first over D-Bus, hands over (the first shows its window) and
/// exits 0 without starting a server; the first keeps running.
fn second_launch_hands_over(environment: &AppEnvironment, first: &mut Child, _bus: &SessionBus) {
    let mut second = Guarded(
        environment
            .command()
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start a second hearth-desktop"),
    );
    let status = wait_with_timeout(&mut second.0, SECOND_LAUNCH_TIMEOUT)
        .expect("a second launch did not hand over and exit");
    assert!(status.success(), "a second launch exited with {status}");
    let mut printed = String::new();
    if let Some(mut stdout) = second.0.stdout.take() {
        let _ = stdout.read_to_string(&mut printed);
    }
    assert!(
        !printed.contains("server on"),
        "a second launch started a server of its own: {printed}"
    );
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first instance exited when a second was launched"
    );
    eprintln!("a second launch handed over to the first and exited");
}

/// Kills the child if the test fails before it ends.
struct Guarded(Child);

impl Drop for Guarded {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// An Xvfb server on a free display, stopped on drop.
struct VirtualDisplay {
    number: u32,
    server: Child,
}

impl VirtualDisplay {
    fn start() -> Self {
        for number in FIRST_DISPLAY..FIRST_DISPLAY + DISPLAYS_TRIED {
            let socket = PathBuf::from(format!("/tmp/.X11-unix/X{number}"));
            let lock = PathBuf::from(format!("/tmp/.X{number}-lock"));
            if socket.exists() || lock.exists() {
                continue;
            }
            let mut server = Command::new("Xvfb")
                .args([
                    &format!(":{number}"),
                    "-screen",
                    "0",
                    SCREEN,
                    "-nolisten",
                    "tcp",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("cannot start Xvfb");
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if server.try_wait().unwrap().is_some() {
                    break; // Taken meanwhile: try the next display.
                }
                if socket.exists() {
                    return Self { number, server };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = server.kill();
            let _ = server.wait();
        }
        panic!("no free X display for Xvfb");
    }

    fn name(&self) -> String {
        format!(":{}", self.number)
    }
}

impl Drop for VirtualDisplay {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// A private D-Bus session bus (the single-instance check runs over it), where dbus-daemon is
/// installed; stopped on drop.
struct SessionBus {
    address: String,
    daemon: Child,
}

impl SessionBus {
    fn start() -> Option<Self> {
        if !on_path("dbus-daemon") {
            eprintln!("dbus-daemon is not installed: the single-instance check is skipped");
            return None;
        }
        let mut daemon = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--nopidfile", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start dbus-daemon");
        let mut line = String::new();
        let _ = BufReader::new(daemon.stdout.take().unwrap()).read_line(&mut line);
        let address = line.trim().to_string();
        if address.is_empty() {
            // Installed without its session configuration, for example.
            eprintln!("dbus-daemon started no session bus: the single-instance check is skipped");
            let _ = daemon.kill();
            let _ = daemon.wait();
            return None;
        }
        Some(Self { address, daemon })
    }
}

impl Drop for SessionBus {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

/// Everything a launch of the app sees: the display, the bus, and private directories, so the
/// test neither reads nor writes the user's own.
struct AppEnvironment {
    variables: Vec<(String, String)>,
}

impl AppEnvironment {
    fn new(
        scratch: &Path,
        home: &Path,
        display: &VirtualDisplay,
        bus: Option<&SessionBus>,
    ) -> Self {
        let runtime_dir = scratch.join("runtime");
        std::fs::create_dir_all(&runtime_dir).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&runtime_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        let path = |name: &str| {
            let dir = scratch.join(name);
            std::fs::create_dir_all(&dir).unwrap();
            dir.display().to_string()
        };
        let mut variables = vec![
            ("HEARTH_HOME".to_string(), home.display().to_string()),
            ("DISPLAY".to_string(), display.name()),
            (
                "XDG_RUNTIME_DIR".to_string(),
                runtime_dir.display().to_string(),
            ),
            ("XDG_DATA_HOME".to_string(), path("data")),
            ("XDG_CONFIG_HOME".to_string(), path("config")),
            ("XDG_CACHE_HOME".to_string(), path("cache")),
            // No accessibility bus to start (it would outlive the test).
            ("NO_AT_BRIDGE".to_string(), "1".to_string()),
            ("HEARTH_LOG".to_string(), "info".to_string()),
        ];
        // Without a bus of its own the app must not find the user's session (and a running
        // Hearth there): point it at a path with no bus, and single instance is off.
        let bus_address = match bus {
            Some(bus) => bus.address.clone(),
            None => format!("unix:path={}/no-bus", runtime_dir.display()),
        };
        variables.push(("DBUS_SESSION_BUS_ADDRESS".to_string(), bus_address));
        Self { variables }
    }

    fn command(&self) -> Command {
        let mut command = Command::new(BINARY);
        command
            .env_remove("WAYLAND_DISPLAY")
            .envs(self.variables.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        command
    }
}

/// Reads the server address the app prints once its server is up.
fn read_server_address(app: &mut Child) -> SocketAddr {
    let stdout = app.stdout.take().unwrap();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(address) = line.split("server on http://").nth(1) {
                let _ = sender.send(address.trim().to_string());
            }
        }
    });
    let address = receiver.recv_timeout(SERVER_TIMEOUT).unwrap_or_else(|_| {
        let status = app.try_wait().unwrap();
        panic!("the app printed no server address within {SERVER_TIMEOUT:?} (exit: {status:?}); see test-output/desktop/app.log")
    });
    address
        .parse()
        .expect("the printed address is not host:port")
}

/// One HTTP/1.1 GET; the whole response as text.
fn http_get(address: SocketAddr, path: &str, key: Option<&str>) -> String {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let authorization = key
        .map(|key| format!("Authorization: Bearer {key}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\n{authorization}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    String::from_utf8_lossy(&response).into_owned()
}

fn status_line(response: &str) -> &str {
    response.lines().next().unwrap_or("(no response)")
}

/// `hearth_http_requests_total` for `/api/` and `/v1/` routes: (route, status) → count.
fn api_responses(metrics: &str) -> BTreeMap<(String, String), u64> {
    let mut responses = BTreeMap::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("hearth_http_requests_total{route=\"") else {
            continue;
        };
        let Some((route, rest)) = rest.split_once("\",status=\"") else {
            continue;
        };
        let Some((status, count)) = rest.split_once("\"} ") else {
            continue;
        };
        if route.starts_with("/api/") || route.starts_with("/v1/") {
            responses.insert(
                (route.to_string(), status.to_string()),
                count.trim().parse().unwrap_or(0),
            );
        }
    }
    responses
}

/// Waits until the UI's API calls have stopped for [`QUIET_FOR`] (at most [`IDLE_TIMEOUT`]).
fn wait_until_idle(address: SocketAddr) {
    let deadline = Instant::now() + IDLE_TIMEOUT;
    let mut last = api_responses(&http_get(address, "/metrics", Some(USER_KEY)));
    let mut quiet_since = Instant::now();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        let now = api_responses(&http_get(address, "/metrics", Some(USER_KEY)));
        if now != last {
            last = now;
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() >= QUIET_FOR {
            return;
        }
    }
    eprintln!("the UI's API calls did not stop within {IDLE_TIMEOUT:?}; measuring anyway");
}

/// Screenshots the display until the window shows more than a blank page.
fn wait_for_paint(display: &VirtualDisplay, screenshot: &Path, app: &mut Child) -> u64 {
    let deadline = Instant::now() + PAINT_TIMEOUT;
    let mut colours = 0;
    while Instant::now() < deadline {
        if let Some(status) = app.try_wait().unwrap() {
            panic!("the app exited with {status} before painting; see test-output/desktop/app.log");
        }
        if let Some(count) = take_screenshot(display, screenshot) {
            colours = count;
            if colours >= PAINTED_MIN_COLOURS {
                return colours;
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!(
        "the window did not paint within {PAINT_TIMEOUT:?} ({colours} colours): {}",
        screenshot.display()
    );
}

/// Saves a PNG of the whole display; returns its number of distinct colours.
fn take_screenshot(display: &VirtualDisplay, path: &Path) -> Option<u64> {
    let dump = Command::new("xwd")
        .args(["-root", "-silent", "-display", &display.name()])
        .output()
        .ok()?;
    if !dump.status.success() || dump.stdout.is_empty() {
        return None;
    }
    let mut convert = Command::new("convert")
        .args(["xwd:-", &format!("png:{}", path.display())])
        .stdin(Stdio::piped())
        .spawn()
        .ok()?;
    convert.stdin.take()?.write_all(&dump.stdout).ok()?;
    if !convert.wait().ok()?.success() {
        return None;
    }
    let count = Command::new("convert")
        .arg(path)
        .args(["-format", "%k", "info:"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&count.stdout).trim().parse().ok()
}

/// A process of the app's tree, identified by pid and start time (pids are reused).
#[derive(Debug, Clone)]
struct ProcessInfo {
    pid: u32,
    start_time: u64,
    name: String,
}

impl ProcessInfo {
    fn read(pid: u32) -> Option<(Self, u32)> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // pid (comm) state ppid ... starttime is field 22; comm may hold spaces and parens.
        let open = stat.find('(')?;
        let close = stat.rfind(')')?;
        let name = stat[open + 1..close].to_string();
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        let parent = fields.get(1)?.parse().ok()?;
        let start_time = fields.get(19)?.parse().ok()?;
        Some((
            Self {
                pid,
                start_time,
                name,
            },
            parent,
        ))
    }

    /// An engine worker: this same binary started with `engine`.
    fn is_engine_worker(&self) -> bool {
        std::fs::read(format!("/proc/{}/cmdline", self.pid))
            .map(|cmdline| {
                cmdline
                    .split(|byte| *byte == 0)
                    .nth(1)
                    .is_some_and(|argument| argument == b"engine")
            })
            .unwrap_or(false)
    }

    fn still_running(&self) -> bool {
        match Self::read(self.pid) {
            Some((now, _)) => {
                let zombie = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
                    .map(|stat| {
                        stat.rsplit_once(')')
                            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
                    })
                    .unwrap_or(false);
                now.start_time == self.start_time && !zombie
            }
            None => false,
        }
    }
}

/// The process and all its descendants.
fn process_tree(root: u32) -> Vec<ProcessInfo> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if let Some(found) = ProcessInfo::read(pid) {
            all.push(found);
        }
    }
    let mut tree = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for (process, process_parent) in &all {
            if process.pid == parent {
                tree.push(process.clone());
            }
            if *process_parent == parent {
                frontier.push(process.pid);
            }
        }
    }
    tree
}

/// Resident (RSS) and proportional (PSS: shared pages split between their users) memory of
/// each process, in KiB.
struct MemoryReport {
    rows: Vec<(u32, String, u64, u64)>,
}

impl MemoryReport {
    fn measure(processes: &[ProcessInfo]) -> Self {
        let kib = |path: String, key: &str| -> u64 {
            std::fs::read_to_string(path)
                .ok()
                .and_then(|text| {
                    text.lines()
                        .find(|line| line.starts_with(key))
                        .and_then(|line| line.split_whitespace().nth(1)?.parse().ok())
                })
                .unwrap_or(0)
        };
        let rows = processes
            .iter()
            .map(|p| {
                (
                    p.pid,
                    p.name.clone(),
                    kib(format!("/proc/{}/status", p.pid), "VmRSS:"),
                    kib(format!("/proc/{}/smaps_rollup", p.pid), "Pss:"),
                )
            })
            .collect();
        Self { rows }
    }

    fn print(&self, path: &Path) {
        let mib = |kib: u64| kib as f64 / 1024.0;
        let mut text = String::from("Idle memory of the desktop app (no model loaded):\n");
        for (pid, name, rss, pss) in &self.rows {
            text.push_str(&format!(
                "  {name:<24} pid {pid:<8} RSS {:>7.1} MiB  PSS {:>7.1} MiB\n",
                mib(*rss),
                mib(*pss)
            ));
        }
        let rss: u64 = self.rows.iter().map(|row| row.2).sum();
        let pss: u64 = self.rows.iter().map(|row| row.3).sum();
        text.push_str(&format!(
            "  total: RSS {:.1} MiB (shared libraries counted once per process), PSS {:.1} MiB (shared pages split); goal < {IDLE_MEMORY_GOAL_MIB} MiB\n",
            mib(rss),
            mib(pss)
        ));
        eprint!("{text}");
        println!(
            "desktop idle memory: RSS {:.1} MiB, PSS {:.1} MiB over {} processes",
            mib(rss),
            mib(pss),
            self.rows.len()
        );
        let _ = std::fs::write(path, text);
    }
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            let candidate = dir.join(program);
            candidate.is_file()
        })
    })
}
