//! The supervisor driving the real worker process (`hearth engine`) on the real model:
//! streaming, crash recovery after `kill -9` and after an `abort()` inside llama.cpp, and
//! clean shutdown with no orphan.

use std::time::{Duration, Instant};

use hearth_protocol::{
    ChatMessage, ErrorKind, FinishReason, LoadParams, Prompt, Role, SamplingParams,
};
use hearth_supervisor::{Generation, GenerationEvent, Supervisor, SupervisorError, WorkerCommand};

fn supervisor() -> Supervisor {
    let mut command = WorkerCommand::engine(env!("CARGO_BIN_EXE_hearth"));
    let home = std::env::temp_dir().join("hearth-test-home");
    command
        .envs
        .push(("HEARTH_HOME".into(), home.display().to_string()));
    Supervisor::new(command)
}

fn greedy_chat(text: &str, max_tokens: u32) -> Generation {
    let mut generation = Generation::new(Prompt::Chat {
        messages: vec![ChatMessage::new(Role::User, text)],
    });
    generation.sampling = SamplingParams::greedy();
    generation.max_tokens = Some(max_tokens);
    generation
}

async fn answer(
    supervisor: &Supervisor,
    generation: Generation,
) -> Result<(String, FinishReason), SupervisorError> {
    let mut stream = supervisor.generate(generation).await?;
    let mut text = String::new();
    while let Some(event) = stream.next().await {
        match event? {
            GenerationEvent::Text { text: piece, .. } => text.push_str(&piece),
            GenerationEvent::Done { finish_reason, .. } => return Ok((text, finish_reason)),
            GenerationEvent::Started { .. } => {}
        }
    }
    unreachable!("a stream ends with Done or an error")
}

fn process_exists(pid: u32) -> bool {
    // A zombie is as good as gone: its stat line says state Z.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| !stat.split(") ").nth(1).unwrap_or("").starts_with('Z'))
        .unwrap_or(false)
}

async fn wait_gone(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if !process_exists(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn tokens_stream_through_the_worker_process() {
    let supervisor = supervisor();
    let info = supervisor
        .load(&hearth_testkit::smollm2(), LoadParams::default())
        .await
        .unwrap();
    assert_eq!(info.architecture, "llama");
    assert_eq!(info.n_layer, 30);
    let (text, reason) = answer(
        &supervisor,
        greedy_chat("What is the capital of France?", 24),
    )
    .await
    .unwrap();
    assert!(text.contains("Paris"), "{text}");
    assert_eq!(reason, FinishReason::Stop);
    supervisor.shutdown().await;
}

#[tokio::test]
async fn a_worker_killed_mid_generation_is_reported_and_replaced() {
    let supervisor = supervisor();
    supervisor
        .load(&hearth_testkit::smollm2(), LoadParams::default())
        .await
        .unwrap();
    let expected = answer(&supervisor, greedy_chat("Say hello.", 8))
        .await
        .unwrap();
    let pid = supervisor.worker_pid().await.unwrap();

    let mut stream = supervisor
        .generate(greedy_chat("Write a long story about a dragon.", 2000))
        .await
        .unwrap();
    let mut seen_text = false;
    while !seen_text {
        seen_text = matches!(stream.next().await, Some(Ok(GenerationEvent::Text { .. })));
    }
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    let error = loop {
        match stream.next().await {
            Some(Ok(_)) => continue,
            Some(Err(error)) => break error,
            None => panic!("the stream ended without reporting the crash"),
        }
    };
    assert!(
        matches!(error, SupervisorError::WorkerCrashed { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("crashed"), "{error}");

    // The next request gets a fresh worker with the model reloaded, and the same answer.
    let again = answer(&supervisor, greedy_chat("Say hello.", 8))
        .await
        .unwrap();
    assert_eq!(again, expected);
    let new_pid = supervisor.worker_pid().await.unwrap();
    assert_ne!(new_pid, pid);
    assert_eq!(supervisor.restarts().await, 1);
    supervisor.shutdown().await;
}

#[tokio::test]
async fn an_abort_inside_llama_cpp_does_not_take_the_caller_down() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = dir.path().join("huge-block-count.gguf");
    // llama.cpp abort()s (SIGABRT) while loading a model that claims 2^31-1 layers.
    hearth_testkit::craft::with_u32_metadata(
        &hearth_testkit::smollm2(),
        &hostile,
        "llama.block_count",
        i32::MAX as u32,
    )
    .unwrap();
    let supervisor = supervisor();
    let error = supervisor
        .load(&hostile, LoadParams::default())
        .await
        .unwrap_err();
    match &error {
        SupervisorError::WorkerCrashed { status } => assert!(status.contains("signal"), "{status}"),
        SupervisorError::Worker(error) => assert_eq!(error.kind, ErrorKind::LoadFailed),
        other => panic!("unexpected {other:?}"),
    }
    // The caller is alive and the next load works.
    supervisor
        .load(&hearth_testkit::smollm2(), LoadParams::default())
        .await
        .unwrap();
    let (text, _) = answer(&supervisor, greedy_chat("Say hi.", 4))
        .await
        .unwrap();
    assert!(!text.is_empty());
    supervisor.shutdown().await;
}

#[tokio::test]
async fn closing_stdin_stops_the_worker() {
    let supervisor = supervisor();
    supervisor
        .load(&hearth_testkit::smollm2(), LoadParams::default())
        .await
        .unwrap();
    let pid = supervisor.worker_pid().await.unwrap();
    // Shut down while a generation is running: the worker finishes its step and exits.
    let _stream = supervisor
        .generate(greedy_chat("Write a long story.", 2000))
        .await
        .unwrap();
    supervisor.shutdown().await;
    assert!(wait_gone(pid).await, "worker {pid} still running");
}

#[tokio::test]
async fn dropping_a_stream_cancels_its_generation() {
    // Proven by the engine's step counter, not by a clock: tests share two cores, and a
    // story that ran to its end would also finish eventually, only with hundreds more steps.
    const STEPS_ALLOWED_AFTER_DROP: u64 = 32;
    let supervisor = supervisor();
    supervisor
        .load(&hearth_testkit::smollm2(), LoadParams::default())
        .await
        .unwrap();
    let mut stream = supervisor
        .generate(greedy_chat("Write a long story about a castle.", 2000))
        .await
        .unwrap();
    let _ = stream.next().await;
    drop(stream);
    let steps_at_drop = supervisor.stats().await.unwrap().steps;
    // With one slot, the next request can only run once the dropped one was cancelled.
    let (text, _) = answer(&supervisor, greedy_chat("Say hi.", 4))
        .await
        .unwrap();
    assert!(!text.is_empty());
    let steps_after = supervisor.stats().await.unwrap().steps;
    assert!(
        steps_after - steps_at_drop <= STEPS_ALLOWED_AFTER_DROP,
        "{} steps ran after the drop: the dropped generation went on",
        steps_after - steps_at_drop
    );
    supervisor.shutdown().await;
}

#[tokio::test]
async fn stats_answer_during_a_long_prefill_step_without_waiting_for_it() {
    let supervisor = supervisor();
    // One prefill step of the whole prompt: n_batch large enough for it.
    let params = LoadParams {
        n_batch: 2048,
        ..LoadParams::default()
    };
    supervisor
        .load(&hearth_testkit::smollm2(), params)
        .await
        .unwrap();
    let steps_before = supervisor.stats().await.unwrap().steps;
    let long_prompt = "The quick brown fox jumps over the lazy dog. ".repeat(180);
    let mut stream = supervisor
        .generate(greedy_chat(&long_prompt, 4))
        .await
        .unwrap();
    match stream.next().await {
        Some(Ok(GenerationEvent::Started { prompt_tokens, .. })) => {
            assert!(prompt_tokens > 1500, "{prompt_tokens}")
        }
        other => panic!("expected Started, got {other:?}"),
    }
    // The engine thread is inside the prefill step now (seconds on this CPU). The worker
    // answers from the counters published before the step: the step is not counted yet.
    let during = supervisor.stats().await.unwrap();
    assert_eq!(during.running, 1, "{during:?}");
    assert_eq!(during.steps, steps_before, "{during:?}");
    while let Some(event) = stream.next().await {
        if let GenerationEvent::Done { .. } = event.unwrap() {
            break;
        }
    }
    let after = supervisor.stats().await.unwrap();
    assert!(after.steps > steps_before, "{after:?}");
}
