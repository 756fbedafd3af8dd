//! Crash safety: a child process (this test binary, run again with an environment flag)
//! saves a streaming answer every 100 ms and is killed with SIGKILL; the reopened database
//! has the conversation with the answer up to its last save.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use hearth_store::{ConversationStore, MessageStatus, NewConversation, NewMessage, Role};

/// Set in the child: the database it writes to.
const CHILD_DATABASE_ENV: &str = "HEARTH_STORE_CRASH_CHILD_DATABASE";
/// How often the child saves, as the server does (it saves at least every second).
const SAVE_INTERVAL: Duration = Duration::from_millis(100);
/// Saves the parent waits for before it kills the child.
const SAVES_BEFORE_KILL: usize = 8;
/// What the child prints after each save: the length of the saved text.
const SAVED_PREFIX: &str = "SAVED ";

fn answer_after(saves: usize) -> String {
    (0..saves).map(|i| format!("token{i} ")).collect()
}

/// The child's work. In a normal test run (no flag) it does nothing.
#[test]
fn child_writes_a_streaming_answer_until_killed() {
    let Some(path) = std::env::var_os(CHILD_DATABASE_ENV) else {
        return;
    };
    let store = ConversationStore::open(&PathBuf::from(path)).unwrap();
    let conversation = store
        .create_conversation(NewConversation {
            title: Some("Interrupted".into()),
            ..NewConversation::default()
        })
        .unwrap();
    store
        .append_message(
            conversation.id,
            NewMessage {
                role: Role::User,
                content: "Count for me".into(),
                status: MessageStatus::Complete,
                metrics: None,
            },
        )
        .unwrap();
    let answer = store
        .append_message(
            conversation.id,
            NewMessage {
                role: Role::Assistant,
                content: String::new(),
                status: MessageStatus::Streaming,
                metrics: None,
            },
        )
        .unwrap();
    for saves in 1.. {
        let text = answer_after(saves);
        store
            .update_streaming_message(answer.id, &text, &Default::default())
            .unwrap();
        println!("{SAVED_PREFIX}{saves}");
        std::thread::sleep(SAVE_INTERVAL);
    }
}

#[test]
fn sigkill_mid_answer_keeps_the_answer_up_to_the_last_save() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("hearth.sqlite3");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_writes_a_streaming_answer_until_killed",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DATABASE_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut last_reported = 0;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(count) = line.strip_prefix(SAVED_PREFIX) {
            last_reported = count.trim().parse().unwrap();
            if last_reported >= SAVES_BEFORE_KILL {
                break;
            }
        }
    }
    assert_eq!(
        last_reported, SAVES_BEFORE_KILL,
        "the child stopped saving early"
    );
    // std's kill is SIGKILL on Unix: no destructor, no flush, no checkpoint runs.
    child.kill().unwrap();
    child.wait().unwrap();

    let store = ConversationStore::open(&path).unwrap();
    let listed = store
        .list_conversations(&hearth_store::ListQuery::default())
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].title, "Interrupted");
    let messages = store.messages(listed[0].id).unwrap();
    assert_eq!(messages.len(), 2);
    let answer = &messages[1];
    // The child may have saved once more between its last line and the kill.
    assert!(
        answer.content == answer_after(last_reported)
            || answer.content == answer_after(last_reported + 1),
        "saved text: {:?}",
        answer.content
    );
    assert_eq!(answer.status, MessageStatus::Stopped, "marked on reopen");
}
