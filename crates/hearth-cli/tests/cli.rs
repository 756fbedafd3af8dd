//! The `hearth` binary end to end: `run` (text and `--json`), `chat` over a pipe with Ctrl-C,
//! `bench --json` (and `--turns --conversations`, `--speculative ngram --neighbour`),
//! `--version`, and clear one-line errors for broken model files.

use std::io::{BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn hearth(home: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hearth"));
    command.env("HEARTH_HOME", home).env_remove("HEARTH_LOG");
    command
}

fn run(home: &Path, args: &[&str]) -> Output {
    hearth(home).args(args).output().unwrap()
}

fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The JSON a successful command printed.
fn success_json(output: &Output) -> serde_json::Value {
    assert_success(output);
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Waits (up to a minute) until `seen` holds at least `length` bytes of output.
fn read_at_least(receiver: &std::sync::mpsc::Receiver<String>, seen: &mut String, length: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < length && Instant::now() < deadline {
        if let Ok(chunk) = receiver.recv_timeout(Duration::from_secs(1)) {
            seen.push_str(&chunk);
        }
    }
}

fn smollm2() -> String {
    hearth_testkit::smollm2().display().to_string()
}

#[test]
fn version_is_printed() {
    let home = tempfile::tempdir().unwrap();
    let output = run(home.path(), &["--version"]);
    assert!(output.status.success());
    let printed = String::from_utf8_lossy(&output.stdout).trim().to_string();
    // `hearth 0.1.0 (commit 1a2b3c4d5e6f; llama.cpp: llama-cpp-sys-2 0.1.161, ggml 0.26.0)`
    let version = env!("CARGO_PKG_VERSION");
    let rest = printed
        .strip_prefix(&format!("hearth {version} (commit "))
        .unwrap_or_else(|| panic!("{printed}"));
    let (commit, llama) = rest.split_once("; ").unwrap();
    assert!(
        commit == "unknown" || (commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{printed}"
    );
    let llama = llama
        .strip_prefix("llama.cpp: llama-cpp-sys-2 ")
        .and_then(|llama| llama.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{printed}"));
    let (sys_version, ggml) = llama.split_once(", ggml ").unwrap();
    assert_eq!(sys_version.split('.').count(), 3, "{printed}");
    assert_eq!(ggml.split('.').count(), 3, "{printed}");
    assert_eq!(printed.lines().count(), 1, "one line, for scripts");
}

#[test]
fn run_streams_an_answer_and_json_reports_metrics() {
    let home = tempfile::tempdir().unwrap();
    let model = smollm2();
    let output = run(
        home.path(),
        &[
            "run",
            "-m",
            &model,
            "--temperature",
            "0",
            "--max-tokens",
            "24",
            "What is the capital of France?",
        ],
    );
    assert_success(&output);
    assert!(String::from_utf8_lossy(&output.stdout).contains("Paris"));

    let output = run(
        home.path(),
        &[
            "run",
            "-m",
            &model,
            "--temperature",
            "0",
            "--max-tokens",
            "8",
            "--json",
            "Hi",
        ],
    );
    let report = success_json(&output);
    assert!(report["text"].as_str().is_some());
    assert_eq!(report["model"]["template_source"], "builtin");
    let metrics = &report["metrics"];
    for key in [
        "prompt_tokens",
        "generated_tokens",
        "ttft_ms",
        "tpot_ms",
        "itl_p50_ms",
        "itl_p95_ms",
        "itl_max_ms",
        "e2e_ms",
        "prefill_tokens_per_s",
        "decode_tokens_per_s",
    ] {
        assert!(metrics[key].is_number(), "{key} missing in {metrics}");
    }
    assert_eq!(
        metrics["itl_ms"].as_array().unwrap().len() as u64,
        metrics["generated_tokens"].as_u64().unwrap() - 1
    );
    // The log file is in the data directory, and llama.cpp's lines are in it.
    let log = std::fs::read_to_string(home.path().join("logs/hearth.log")).unwrap();
    assert!(log.contains("model loaded"), "{log}");
}

fn assert_one_clear_line(output: &Output, expected: &str) {
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected: {stderr}");
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains(expected),
        "{stderr}"
    );
}

#[test]
fn broken_model_files_give_one_clear_line() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.gguf");
    let output = run(home.path(), &["run", "-m", missing.to_str().unwrap(), "hi"]);
    assert_one_clear_line(&output, "not found");

    let html = dir.path().join("page.gguf");
    std::fs::write(&html, "<!DOCTYPE html><html>Not Found</html>").unwrap();
    let output = run(home.path(), &["run", "-m", html.to_str().unwrap(), "hi"]);
    assert_one_clear_line(&output, "not a GGUF model file");

    let truncated = dir.path().join("cut.gguf");
    hearth_testkit::craft::truncated(&hearth_testkit::smollm2(), &truncated, 4096).unwrap();
    let output = run(
        home.path(),
        &["run", "-m", truncated.to_str().unwrap(), "hi"],
    );
    assert_one_clear_line(&output, "cut.gguf");
}

#[test]
fn bench_json_has_the_documented_keys() {
    let home = tempfile::tempdir().unwrap();
    let output = run(
        home.path(),
        &[
            "bench",
            "-m",
            &smollm2(),
            "--prompt-tokens",
            "64",
            "--gen-tokens",
            "8",
            "--repetitions",
            "1",
            "--json",
        ],
    );
    let report = success_json(&output);
    for key in [
        "prefill_tokens_per_s",
        "decode_tokens_per_s",
        "ttft_ms",
        "tpot_ms",
        "itl_p50_ms",
        "itl_p95_ms",
    ] {
        assert!(report[key].as_f64().unwrap() > 0.0, "{key} in {report}");
    }
    assert_eq!(report["runs"][0]["prompt_tokens"], 64);
    assert_eq!(report["runs"][0]["generated_tokens"], 8);
}

/// `bench --speculative ngram --neighbour --json`: the neighbour's TPOT with and without the
/// other stream speculating, its ratio, and that the neighbour guessed nothing and answered
/// the same on both workers.
#[test]
fn bench_neighbour_json_has_the_documented_keys() {
    let home = tempfile::tempdir().unwrap();
    let output = run(
        home.path(),
        &[
            "bench",
            "-m",
            &smollm2(),
            "--speculative",
            "ngram",
            "--neighbour",
            "--gen-tokens",
            "24",
            "--repetitions",
            "1",
            "--json",
        ],
    );
    let report = success_json(&output);
    // Figures, not their values: 24 tokens leave only a few steps in which both decode.
    for key in ["neighbour_tpot_ratio", "speculating_speedup"] {
        assert!(report[key].is_f64(), "{key} in {report}");
    }
    for side in ["baseline", "speculative_run"] {
        assert!(
            report[side]["neighbour_tpot_ms"].is_f64(),
            "{side} in {report}"
        );
    }
    assert_eq!(report["neighbour_drafted_tokens"], 0);
    // How many the other stream guesses beside the neighbour depends on what a guess costs
    // here (`PrefillPacer::guess_budget`): on this CPU, about none.
    assert!(report["speculating_drafted_tokens"].is_u64(), "{report}");
    assert_eq!(report["neighbour_identical_output"], true);
}

/// `bench --turns --conversations`: two conversations taking turns on two slots each reuse
/// their own history from their second turn on.
#[test]
fn bench_conversations_take_turns_and_each_reuses_its_history() {
    let home = tempfile::tempdir().unwrap();
    let output = run(
        home.path(),
        &[
            "bench",
            "-m",
            &smollm2(),
            "--turns",
            "2",
            "--conversations",
            "2",
            "--parallel",
            "2",
            "--ctx",
            "4096",
            "--json",
        ],
    );
    let report = success_json(&output);
    assert_eq!(report["conversations"], 2);
    let turns = report["turns"].as_array().unwrap();
    let order: Vec<(u64, u64)> = turns
        .iter()
        .map(|t| {
            (
                t["conversation"].as_u64().unwrap(),
                t["turn"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(order, [(0, 1), (1, 1), (0, 2), (1, 2)]);
    for second in &turns[2..] {
        let prompt = second["prompt_tokens"].as_u64().unwrap();
        let cached = second["cached_prompt_tokens"].as_u64().unwrap();
        assert!(cached * 2 > prompt, "{second}");
    }
    assert!(report["last_turn_ttft_ratio"].as_f64().unwrap() > 0.0);
}

/// Reads the child's stdout on a thread, so the test can wait for text with a deadline.
fn spawn_reader(mut stdout: impl Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 256];
        while let Ok(n) = stdout.read(&mut buffer) {
            if n == 0
                || sender
                    .send(String::from_utf8_lossy(&buffer[..n]).into_owned())
                    .is_err()
            {
                break;
            }
        }
    });
    receiver
}

fn read_until(receiver: &std::sync::mpsc::Receiver<String>, seen: &mut String, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !seen.contains(needle) {
        let left = deadline.saturating_duration_since(Instant::now());
        match receiver.recv_timeout(left) {
            Ok(chunk) => seen.push_str(&chunk),
            Err(_) => panic!("{needle:?} never appeared in {seen:?}"),
        }
    }
}

#[test]
fn chat_keeps_context_and_ctrl_c_stops_only_the_answer() {
    let home = tempfile::tempdir().unwrap();
    let mut child = hearth(home.path())
        .args([
            "chat",
            "-m",
            &smollm2(),
            "--temperature",
            "0",
            "--max-tokens",
            "400",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let output = spawn_reader(child.stdout.take().unwrap());
    let errors = child.stderr.take().unwrap();
    let mut seen = String::new();
    read_until(&output, &mut seen, "> ");

    writeln!(stdin, "What is the capital of France?").unwrap();
    read_until(&output, &mut seen, "Paris");
    read_until(&output, &mut seen, "\n> ");

    // A long answer, interrupted by Ctrl-C (SIGINT to the chat process only).
    let before = seen.len();
    writeln!(
        stdin,
        "Write a very long story about a dragon and a knight."
    )
    .unwrap();
    read_at_least(&output, &mut seen, before + 40);
    let interrupted_at = Instant::now();
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    read_until(&output, &mut seen, "\n> ");
    assert!(interrupted_at.elapsed() < Duration::from_secs(10));
    assert!(
        child.try_wait().unwrap().is_none(),
        "Ctrl-C must not end the program"
    );

    // The conversation goes on with its history, then /exit leaves cleanly.
    writeln!(stdin, "/exit").unwrap();
    let status = child.wait().unwrap();
    assert!(status.success());
    let mut stderr = String::new();
    BufReader::new(errors).read_to_string(&mut stderr).unwrap();
    assert!(stderr.contains("(stopped)"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn killing_the_front_end_leaves_no_orphan_worker() {
    let home = tempfile::tempdir().unwrap();
    let mut child = hearth(home.path())
        .args([
            "run",
            "-m",
            &smollm2(),
            "--temperature",
            "0",
            "--max-tokens",
            "3000",
            "Write a very long story.",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let output = spawn_reader(child.stdout.take().unwrap());
    let mut seen = String::new();
    read_at_least(&output, &mut seen, 20);
    let children =
        std::fs::read_to_string(format!("/proc/{}/task/{}/children", child.id(), child.id()))
            .unwrap_or_default();
    let worker: u32 = children
        .split_whitespace()
        .next()
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| {
            // The runtime's threads may own the child; look through every task.
            std::fs::read_dir(format!("/proc/{}/task", child.id()))
                .unwrap()
                .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("children")).ok())
                .flat_map(|c| c.split_whitespace().map(str::to_string).collect::<Vec<_>>())
                .next()
                .and_then(|pid| pid.parse().ok())
                .expect("the worker process")
        });
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{worker}")).exists() && Instant::now() < deadline {
        let stat = std::fs::read_to_string(format!("/proc/{worker}/stat")).unwrap_or_default();
        if stat.split(") ").nth(1).unwrap_or("").starts_with('Z') {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let stat = std::fs::read_to_string(format!("/proc/{worker}/stat")).unwrap_or_default();
    let state = stat.split(") ").nth(1).unwrap_or("").chars().next();
    assert!(
        matches!(state, None | Some('Z')),
        "worker {worker} is still running: {stat}"
    );
}
