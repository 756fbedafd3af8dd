//! The supervisor against a scripted fake worker (the fast tier: no model, no llama.cpp): the
//! handshake, how crashes reach callers, cancel on drop, restart and reload. This test binary
//! is also the worker process it supervises (`hearth_testkit::fake_worker`).

use std::path::Path;
use std::time::Duration;

use hearth_protocol::{ErrorKind, FinishReason, LoadParams, Prompt};
use hearth_supervisor::{
    Generation, GenerationEvent, Supervisor, SupervisorError, WorkerCommand, WORKER_EXIT_GRACE,
};
use hearth_testkit::fake_worker::{
    answer, logged_pids, run_tests_or_worker, Action, FakeWorker, Script, Start,
};

fn main() {
    run_tests_or_worker(&[
        (
            "a_ready_worker_loads_and_streams",
            a_ready_worker_loads_and_streams,
        ),
        (
            "a_protocol_version_mismatch_is_a_handshake_error",
            a_protocol_version_mismatch_is_a_handshake_error,
        ),
        (
            "a_worker_that_exits_or_babbles_at_start_is_a_handshake_error",
            a_worker_that_exits_or_babbles_at_start_is_a_handshake_error,
        ),
        (
            "a_load_error_reaches_the_caller",
            a_load_error_reaches_the_caller,
        ),
        (
            "a_crash_fails_every_request_in_flight_with_its_signal",
            a_crash_fails_every_request_in_flight_with_its_signal,
        ),
        (
            "an_exit_code_is_named_in_the_crash",
            an_exit_code_is_named_in_the_crash,
        ),
        (
            "after_a_crash_the_next_request_restarts_and_reloads",
            after_a_crash_the_next_request_restarts_and_reloads,
        ),
        (
            "dropping_a_stream_cancels_it_in_the_worker",
            dropping_a_stream_cancels_it_in_the_worker,
        ),
        (
            "a_stalled_request_does_not_hold_up_another",
            a_stalled_request_does_not_hold_up_another,
        ),
        (
            "a_request_error_ends_only_its_stream",
            a_request_error_ends_only_its_stream,
        ),
        ("a_shutdown_stops_the_worker", a_shutdown_stops_the_worker),
        (
            "a_worker_that_ignores_its_stdin_closing_is_killed_after_the_grace",
            a_worker_that_ignores_its_stdin_closing_is_killed_after_the_grace,
        ),
    ]);
}

/// How long any one await may take before the test fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(10);

fn command(script: &Script) -> WorkerCommand {
    let parts = FakeWorker::command_parts(script);
    WorkerCommand {
        program: parts.program,
        args: parts.args,
        envs: parts.envs,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .expect("the supervisor answered in time")
}

async fn loaded(script: &Script) -> Supervisor {
    let supervisor = Supervisor::new(command(script));
    within(supervisor.load(Path::new("/models/fake.gguf"), LoadParams::default()))
        .await
        .expect("the fake model loads");
    supervisor
}

fn generation() -> Generation {
    Generation::new(Prompt::Text {
        text: "hello".to_string(),
    })
}

/// Every event of one stream: the events, then the error that ended it (if one did).
async fn collect(supervisor: &Supervisor) -> (Vec<GenerationEvent>, Option<SupervisorError>) {
    let mut stream = within(supervisor.generate(generation()))
        .await
        .expect("the generation starts");
    let mut events = Vec::new();
    while let Some(event) = within(stream.next()).await {
        match event {
            Ok(event) => events.push(event),
            Err(error) => return (events, Some(error)),
        }
    }
    (events, None)
}

fn text_of(events: &[GenerationEvent]) -> String {
    events
        .iter()
        .filter_map(|event| match event {
            GenerationEvent::Text { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

fn a_ready_worker_loads_and_streams() {
    runtime().block_on(async {
        let supervisor = loaded(&Script::generating(answer(&["Hel", "lo"]))).await;
        assert_eq!(
            supervisor.model_info().await.unwrap().file_name,
            "fake.gguf"
        );
        let (events, error) = collect(&supervisor).await;
        assert!(error.is_none(), "{error:?}");
        assert!(matches!(
            events[0],
            GenerationEvent::Started {
                prompt_tokens: 5,
                ..
            }
        ));
        assert_eq!(text_of(&events), "Hello");
        match events.last() {
            Some(GenerationEvent::Done {
                finish_reason,
                metrics,
                ..
            }) => {
                assert_eq!(*finish_reason, FinishReason::Stop);
                assert_eq!(metrics.generated_tokens, 2);
            }
            other => panic!("the stream ends with Done, not {other:?}"),
        }
        assert_eq!(supervisor.restarts().await, 0);
        supervisor.shutdown().await;
    });
}

fn a_protocol_version_mismatch_is_a_handshake_error() {
    runtime().block_on(async {
        let script = Script {
            protocol_version: Some(hearth_protocol::PROTOCOL_VERSION + 1),
            ..Script::default()
        };
        let supervisor = Supervisor::new(command(&script));
        let error = within(supervisor.load(Path::new("/m.gguf"), LoadParams::default()))
            .await
            .unwrap_err();
        match error {
            SupervisorError::Handshake(message) => {
                assert!(message.contains("speaks protocol"), "{message}")
            }
            other => panic!("expected a handshake error, got {other:?}"),
        }
    });
}

fn a_worker_that_exits_or_babbles_at_start_is_a_handshake_error() {
    runtime().block_on(async {
        for (start, expected) in [
            (Start::ExitAtOnce, "exited at once"),
            (
                Start::Line("hello, I am not JSON".into()),
                "unexpected first line",
            ),
        ] {
            let script = Script {
                start,
                ..Script::default()
            };
            let supervisor = Supervisor::new(command(&script));
            match within(supervisor.load(Path::new("/m.gguf"), LoadParams::default())).await {
                Err(SupervisorError::Handshake(message)) => {
                    assert!(message.contains(expected), "{message}")
                }
                other => panic!("expected a handshake error, got {other:?}"),
            }
        }
    });
}

fn a_load_error_reaches_the_caller() {
    runtime().block_on(async {
        let script = Script {
            load: vec![Action::Error {
                kind: ErrorKind::OutOfMemory,
                message: "not enough memory for the model".into(),
            }],
            ..Script::default()
        };
        let supervisor = Supervisor::new(command(&script));
        match within(supervisor.load(Path::new("/m.gguf"), LoadParams::default())).await {
            Err(SupervisorError::Worker(error)) => {
                assert_eq!(error.kind, ErrorKind::OutOfMemory)
            }
            other => panic!("expected the worker's error, got {other:?}"),
        }
        // Nothing is loaded, so a generation is refused without reaching the worker.
        assert!(matches!(
            supervisor.generate(generation()).await,
            Err(SupervisorError::NoModelLoaded)
        ));
    });
}

fn a_crash_fails_every_request_in_flight_with_its_signal() {
    runtime().block_on(async {
        // The first generation waits; the second aborts the whole worker.
        let script = Script {
            generations: vec![
                vec![Action::Started { prompt_tokens: 3 }, Action::Stall],
                vec![Action::Sleep { ms: 50 }, Action::Abort],
            ],
            ..Script::default()
        };
        let supervisor = loaded(&script).await;
        let first = supervisor.clone();
        let waiting = tokio::spawn(async move { collect(&first).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (_, aborting) = collect(&supervisor).await;
        let (_, waited) = within(waiting).await.unwrap();
        for error in [aborting, waited] {
            match error {
                Some(SupervisorError::WorkerCrashed { status }) => {
                    assert!(status.contains("SIGABRT"), "{status}")
                }
                other => panic!("expected a crash naming SIGABRT, got {other:?}"),
            }
        }
    });
}

fn an_exit_code_is_named_in_the_crash() {
    runtime().block_on(async {
        let supervisor = loaded(&Script::generating(vec![Action::Exit { code: 3 }])).await;
        match collect(&supervisor).await.1 {
            Some(SupervisorError::WorkerCrashed { status }) => {
                assert_eq!(status, "worker exited with code 3")
            }
            other => panic!("expected a crash, got {other:?}"),
        }
    });
}

fn after_a_crash_the_next_request_restarts_and_reloads() {
    runtime().block_on(async {
        let log = tempfile::NamedTempFile::new().unwrap();
        let script = Script {
            generations: vec![vec![Action::Abort], answer(&["again"])],
            ..Script::default()
        }
        .logging_to(log.path());
        let supervisor = loaded(&script).await;
        let first_pid = supervisor.worker_pid().await.unwrap();
        assert!(matches!(
            collect(&supervisor).await.1,
            Some(SupervisorError::WorkerCrashed { .. })
        ));
        let (events, error) = collect(&supervisor).await;
        assert!(error.is_none(), "{error:?}");
        assert_eq!(text_of(&events), "again");
        assert_eq!(supervisor.restarts().await, 1);
        let second_pid = supervisor.worker_pid().await.unwrap();
        assert_ne!(second_pid, first_pid);
        assert_eq!(logged_pids(log.path()), [first_pid, second_pid]);
        // The new worker was given the same model before the generation.
        let requests = std::fs::read_to_string(log.path()).unwrap();
        let kinds: Vec<&str> = requests
            .lines()
            .filter_map(|line| {
                let start = line.find("\"type\":\"")? + 8;
                let end = start + line[start..].find('"')?;
                Some(&line[start..end])
            })
            .collect();
        assert_eq!(kinds, ["load", "generate", "load", "generate"]);
        assert_eq!(
            requests.matches("/models/fake.gguf").count(),
            2,
            "{requests}"
        );
        supervisor.shutdown().await;
    });
}

fn dropping_a_stream_cancels_it_in_the_worker() {
    runtime().block_on(async {
        let log = tempfile::NamedTempFile::new().unwrap();
        let script = Script {
            generations: vec![
                vec![
                    Action::Started { prompt_tokens: 3 },
                    Action::Token { text: "a".into() },
                    Action::WaitForCancel,
                ],
                answer(&["next"]),
            ],
            ..Script::default()
        }
        .logging_to(log.path());
        let supervisor = loaded(&script).await;
        let mut stream = supervisor.generate(generation()).await.unwrap();
        let request_id = stream.request_id();
        within(stream.next()).await.unwrap().unwrap();
        within(stream.next()).await.unwrap().unwrap();
        drop(stream);
        let cancel = format!("{{\"type\":\"cancel\",\"request_id\":{request_id}}}");
        within(async {
            while !std::fs::read_to_string(log.path())
                .unwrap()
                .contains(&cancel)
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        // The worker is still there and serves the next request.
        let (events, error) = collect(&supervisor).await;
        assert!(error.is_none(), "{error:?}");
        assert_eq!(text_of(&events), "next");
        supervisor.shutdown().await;
    });
}

fn a_stalled_request_does_not_hold_up_another() {
    runtime().block_on(async {
        let script = Script {
            generations: vec![
                vec![Action::Started { prompt_tokens: 3 }, Action::Stall],
                answer(&["free"]),
            ],
            ..Script::default()
        };
        let supervisor = loaded(&script).await;
        let mut stalled = supervisor.generate(generation()).await.unwrap();
        within(stalled.next()).await.unwrap().unwrap();
        let (events, error) = collect(&supervisor).await;
        assert!(error.is_none(), "{error:?}");
        assert_eq!(text_of(&events), "free");
        // The stalled one is still open: nothing ended it.
        assert!(
            tokio::time::timeout(Duration::from_millis(100), stalled.next())
                .await
                .is_err()
        );
        drop(stalled);
        supervisor.shutdown().await;
    });
}

fn a_request_error_ends_only_its_stream() {
    runtime().block_on(async {
        let script = Script {
            generations: vec![
                vec![Action::Error {
                    kind: ErrorKind::ContextLengthExceeded,
                    message: "the prompt is too long".into(),
                }],
                answer(&["fine"]),
            ],
            ..Script::default()
        };
        let supervisor = loaded(&script).await;
        let mut failing = supervisor.generate(generation()).await.unwrap();
        match within(failing.next()).await {
            Some(Err(SupervisorError::Worker(error))) => {
                assert_eq!(error.kind, ErrorKind::ContextLengthExceeded)
            }
            other => panic!("expected the worker's error, got {other:?}"),
        }
        let (events, error) = collect(&supervisor).await;
        assert!(error.is_none(), "{error:?}");
        assert_eq!(text_of(&events), "fine");
        assert_eq!(supervisor.restarts().await, 0);
    });
}

fn a_shutdown_stops_the_worker() {
    runtime().block_on(async {
        let supervisor = loaded(&Script::default()).await;
        let pid = supervisor.worker_pid().await.unwrap();
        within(supervisor.shutdown()).await;
        assert_eq!(supervisor.worker_pid().await, None);
        // The process is gone (reaped by the supervisor), not merely forgotten.
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    });
}

fn a_worker_that_ignores_its_stdin_closing_is_killed_after_the_grace() {
    runtime().block_on(async {
        let script = Script {
            ignore_stdin_close: true,
            ..Script::default()
        };
        let supervisor = loaded(&script).await;
        let pid = supervisor.worker_pid().await.unwrap();
        let started = std::time::Instant::now();
        within(supervisor.shutdown()).await;
        // It was given the grace to finish its step, then killed and reaped: no process left.
        assert!(started.elapsed() >= WORKER_EXIT_GRACE);
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "worker {pid} is still there"
        );
    });
}
