//! The store through its public API on real files: conversations, messages, search, delete
//! with undo, export, and rows corrupted behind its back with raw SQL.

use hearth_store::{
    ConversationStore, ListQuery, MessageStatus, NewConversation, NewMessage, Reasoning, Role,
    SettingsUpdate, StoreError,
};
use serde_json::json;

// A test crate's root looks for its modules beside it; this one lives in `store/`.
#[path = "store/corruption.rs"]
mod corruption;

fn open() -> (tempfile::TempDir, ConversationStore) {
    let folder = tempfile::tempdir().unwrap();
    let store = ConversationStore::open(&folder.path().join("data/hearth.sqlite3")).unwrap();
    (folder, store)
}

fn message(role: Role, content: &str) -> NewMessage {
    NewMessage {
        role,
        content: content.into(),
        status: MessageStatus::Complete,
        metrics: None,
    }
}

fn raw(store: &ConversationStore) -> rusqlite::Connection {
    rusqlite::Connection::open(store.path()).unwrap()
}

#[test]
fn conversations_are_created_listed_renamed_and_configured() {
    let (_folder, store) = open();
    let first = store
        .create_conversation(NewConversation {
            title: Some("Garden plans".into()),
            model: Some("smollm2".into()),
            system_prompt: Some("Be brief.".into()),
            settings: Some(json!({"temperature": 0.2})),
        })
        .unwrap();
    let second = store
        .create_conversation(NewConversation::default())
        .unwrap();
    assert_eq!(second.title, "");
    store
        .append_message(second.id, message(Role::User, "What is a trellis?\nMore."))
        .unwrap();
    assert_eq!(
        store.conversation(second.id).unwrap().title,
        "What is a trellis?"
    );

    let listed = store.list_conversations(&ListQuery::default()).unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].id, second.id, "most recently updated first");

    let renamed = store.rename_conversation(first.id, " Vegetables ").unwrap();
    assert_eq!(renamed.title, "Vegetables");
    assert!(matches!(
        store.rename_conversation(first.id, ""),
        Err(StoreError::InvalidInput { field: "title", .. })
    ));
    assert!(matches!(
        store.rename_conversation(999, "x"),
        Err(StoreError::ConversationNotFound(999))
    ));

    let updated = store
        .update_settings(
            first.id,
            SettingsUpdate {
                model: Some(Some("gemma".into())),
                system_prompt: Some(None),
                settings: Some(json!({"temperature": 0.9, "top_p": 0.5})),
            },
        )
        .unwrap();
    assert_eq!(updated.model.as_deref(), Some("gemma"));
    assert_eq!(updated.system_prompt, None);
    assert_eq!(updated.settings["top_p"], 0.5);
    assert!(matches!(
        store.update_settings(
            first.id,
            SettingsUpdate {
                settings: Some(json!([1, 2])),
                ..SettingsUpdate::default()
            }
        ),
        Err(StoreError::InvalidInput {
            field: "settings",
            ..
        })
    ));
}

#[test]
fn search_finds_titles_and_message_text_and_takes_wildcards_literally() {
    let (_folder, store) = open();
    let tomatoes = store
        .create_conversation(NewConversation {
            title: Some("Tomatoes".into()),
            ..NewConversation::default()
        })
        .unwrap();
    let rust = store
        .create_conversation(NewConversation {
            title: Some("Borrowing".into()),
            ..NewConversation::default()
        })
        .unwrap();
    store
        .append_message(
            rust.id,
            message(Role::User, "Explain the borrow checker, 100% please"),
        )
        .unwrap();
    let search = |text: &str| {
        store
            .list_conversations(&ListQuery {
                search: Some(text.into()),
                ..ListQuery::default()
            })
            .unwrap()
            .into_iter()
            .map(|c| c.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(search("tomato"), vec![tomatoes.id]);
    assert_eq!(search("CHECKER"), vec![rust.id]);
    assert_eq!(search("100%"), vec![rust.id]);
    assert!(search("1_0").is_empty());
    assert_eq!(search("  ").len(), 2);
}

#[test]
fn delete_can_be_undone_until_purged() {
    let (_folder, store) = open();
    let conversation = store
        .create_conversation(NewConversation {
            title: Some("Temporary".into()),
            ..NewConversation::default()
        })
        .unwrap();
    store
        .append_message(conversation.id, message(Role::User, "hello"))
        .unwrap();
    let deleted = store.soft_delete(conversation.id).unwrap();
    assert!(deleted.deleted_at.is_some());
    assert!(store
        .list_conversations(&ListQuery::default())
        .unwrap()
        .is_empty());
    let trash = store
        .list_conversations(&ListQuery {
            deleted: true,
            ..ListQuery::default()
        })
        .unwrap();
    assert_eq!(trash.len(), 1);
    assert!(matches!(
        store.append_message(conversation.id, message(Role::User, "more")),
        Err(StoreError::ConversationDeleted(_))
    ));

    let restored = store.restore(conversation.id).unwrap();
    assert_eq!(restored.deleted_at, None);
    assert_eq!(store.messages(conversation.id).unwrap().len(), 1);

    store.soft_delete(conversation.id).unwrap();
    assert_eq!(store.purge_deleted_before(i64::MAX).unwrap(), 1);
    assert!(matches!(
        store.conversation(conversation.id),
        Err(StoreError::ConversationNotFound(_))
    ));
    let orphans: i64 = raw(&store)
        .query_row("SELECT COUNT(*) FROM messages", [], |row| row.get(0))
        .unwrap();
    assert_eq!(orphans, 0, "messages go with their conversation");
}

#[test]
fn a_streaming_answer_is_saved_as_it_grows_and_then_finished() {
    let (_folder, store) = open();
    let conversation = store
        .create_conversation(NewConversation::default())
        .unwrap();
    store
        .append_message(conversation.id, message(Role::User, "Count"))
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
    let thinking = |text: &str, tokens: u32, ms: u64| Reasoning {
        text: text.into(),
        tokens,
        ms,
    };
    store
        .update_streaming_message(answer.id, "", &thinking("Counting", 1, 10))
        .unwrap();
    store
        .update_streaming_message(answer.id, "one two", &thinking("Counting up.", 3, 40))
        .unwrap();
    let streaming = store.message(answer.id).unwrap();
    assert_eq!(streaming.content, "one two");
    assert_eq!(streaming.reasoning, thinking("Counting up.", 3, 40));
    let metrics = json!({"ttft_ms": 12.5, "decode_tokens_per_second": 80.0, "generated_tokens": 3});
    let finished = store
        .finish_message(
            answer.id,
            "one two three",
            &thinking("Counting up to three.", 5, 1250),
            MessageStatus::Complete,
            Some(&metrics),
        )
        .unwrap();
    assert_eq!(finished.status, MessageStatus::Complete);
    assert_eq!(finished.metrics, Some(metrics));
    assert_eq!(
        finished.reasoning,
        thinking("Counting up to three.", 5, 1250)
    );
    let wire = serde_json::to_value(&finished).unwrap();
    assert_eq!(
        (
            &wire["reasoning"],
            &wire["reasoning_tokens"],
            &wire["reasoning_ms"]
        ),
        (&json!("Counting up to three."), &json!(5), &json!(1250))
    );
    // The thinking survives an export and an import, and shows in Markdown.
    let exported = store.export_json(conversation.id).unwrap();
    let imported = store
        .import_conversation(hearth_store::export::parse_json(&exported).unwrap())
        .unwrap();
    assert_eq!(
        imported.messages[1].reasoning,
        thinking("Counting up to three.", 5, 1250)
    );
    // A message without thinking has none of its fields.
    assert!(serde_json::to_value(&imported.messages[0])
        .unwrap()
        .get("reasoning")
        .is_none());
    assert!(store
        .export_markdown(conversation.id)
        .unwrap()
        .contains("<summary>Thinking</summary>\n\nCounting up to three."));
    assert!(matches!(
        store.update_streaming_message(answer.id, "late", &Reasoning::default()),
        Err(StoreError::MessageNotStreaming(_))
    ));
    assert!(matches!(
        store.update_streaming_message(12345, "x", &Reasoning::default()),
        Err(StoreError::MessageNotFound(12345))
    ));
}

#[test]
fn answers_left_streaming_by_a_crash_are_stopped_on_reopen() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("hearth.sqlite3");
    let store = ConversationStore::open(&path).unwrap();
    let conversation = store
        .create_conversation(NewConversation::default())
        .unwrap();
    let answer = store
        .append_message(
            conversation.id,
            NewMessage {
                role: Role::Assistant,
                content: "partial".into(),
                status: MessageStatus::Streaming,
                metrics: None,
            },
        )
        .unwrap();
    drop(store);
    let store = ConversationStore::open(&path).unwrap();
    let reopened = store.message(answer.id).unwrap();
    assert_eq!(reopened.status, MessageStatus::Stopped);
    assert_eq!(reopened.content, "partial");
}

#[test]
fn exports_hold_the_whole_conversation() {
    let (_folder, store) = open();
    let conversation = store
        .create_conversation(NewConversation {
            title: Some("Export me".into()),
            model: Some("smollm2".into()),
            system_prompt: Some("You are terse.".into()),
            settings: None,
        })
        .unwrap();
    store
        .append_message(conversation.id, message(Role::User, "Hi *there*"))
        .unwrap();
    store
        .append_message(
            conversation.id,
            NewMessage {
                role: Role::Assistant,
                content: "Hello.".into(),
                status: MessageStatus::Complete,
                metrics: Some(json!({"ttft_ms": 5.0})),
            },
        )
        .unwrap();
    let markdown = store.export_markdown(conversation.id).unwrap();
    assert_eq!(
        markdown,
        "# Export me\n\nModel: `smollm2`\n\n## System\n\nYou are terse.\n\n## User\n\nHi *there*\n\n## Assistant\n\nHello.\n\n"
    );
    let exported = store.export_json(conversation.id).unwrap();
    assert_eq!(exported["format"], "hearth-conversation");
    assert_eq!(exported["title"], "Export me");
    assert_eq!(exported["messages"][1]["metrics"]["ttft_ms"], 5.0);
    assert_eq!(exported["messages"][0]["role"], "user");
}

/// A conversation of four messages: user, assistant, user, assistant.
fn two_turns(store: &ConversationStore) -> (i64, Vec<i64>) {
    let conversation = store
        .create_conversation(NewConversation::default())
        .unwrap();
    let ids = [
        "first question",
        "first answer",
        "second question",
        "second answer",
    ]
    .iter()
    .enumerate()
    .map(|(index, text)| {
        let role = if index % 2 == 0 {
            Role::User
        } else {
            Role::Assistant
        };
        store
            .append_message(conversation.id, message(role, text))
            .unwrap()
            .id
    })
    .collect();
    (conversation.id, ids)
}

#[test]
fn truncating_removes_every_later_message_and_can_edit_the_question() {
    let (_folder, store) = open();
    let (id, ids) = two_turns(&store);
    let (other, other_ids) = two_turns(&store);

    // Regenerate: keep up to the last question.
    let kept = store.truncate_after(id, ids[2], None).unwrap();
    assert_eq!(kept.removed, 1);
    assert_eq!(kept.message.content, "second question");
    let contents: Vec<String> = store
        .messages(id)
        .unwrap()
        .into_iter()
        .map(|m| m.content)
        .collect();
    assert_eq!(
        contents,
        ["first question", "first answer", "second question"]
    );

    // Edit: the first question gets new text and everything after it goes.
    let edited = store.truncate_after(id, ids[0], Some("edited")).unwrap();
    assert_eq!(edited.removed, 2);
    assert_eq!(edited.message.content, "edited");
    let messages = store.messages(id).unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].content, "edited");

    // The other conversation is untouched, and its messages are not this one's.
    assert_eq!(store.messages(other).unwrap().len(), 4);
    assert!(matches!(
        store.truncate_after(id, other_ids[0], None),
        Err(StoreError::MessageNotFound(_))
    ));
    // Only a user message can be edited; a refused edit changes nothing.
    assert!(matches!(
        store.truncate_after(other, other_ids[1], Some("x")),
        Err(StoreError::InvalidInput {
            field: "message_id",
            ..
        })
    ));
    assert_eq!(store.messages(other).unwrap().len(), 4);
    assert_eq!(store.messages(other).unwrap()[1].content, "first answer");
    store.soft_delete(other).unwrap();
    assert!(matches!(
        store.truncate_after(other, other_ids[0], None),
        Err(StoreError::ConversationDeleted(_))
    ));
}

#[test]
fn an_export_imports_back_as_a_new_conversation() {
    let (_folder, store) = open();
    let (id, _) = two_turns(&store);
    store
        .update_settings(
            id,
            SettingsUpdate {
                model: Some(Some("smollm2".into())),
                system_prompt: Some(Some("Be brief.".into())),
                settings: Some(json!({"temperature": 0.3})),
            },
        )
        .unwrap();
    let mut exported = store.export_json(id).unwrap();
    exported["messages"][3]["status"] = json!("streaming");
    exported["messages"][3]["metrics"] = json!({"ttft_ms": 12.5});

    let parsed = hearth_store::export::parse_json(&exported).unwrap();
    let imported = store.import_conversation(parsed).unwrap();
    assert_ne!(imported.conversation.id, id);
    assert_eq!(imported.conversation.title, "first question");
    assert_eq!(imported.conversation.model.as_deref(), Some("smollm2"));
    assert_eq!(
        imported.conversation.system_prompt.as_deref(),
        Some("Be brief.")
    );
    assert_eq!(imported.conversation.settings, json!({"temperature": 0.3}));
    let original = store.messages(id).unwrap();
    assert_eq!(imported.messages.len(), 4);
    for (copy, original) in imported.messages.iter().zip(&original) {
        assert_eq!(copy.role, original.role);
        assert_eq!(copy.content, original.content);
        assert_eq!(copy.created_at, original.created_at);
    }
    assert_eq!(imported.messages[3].status, MessageStatus::Stopped);
    assert_eq!(imported.messages[3].metrics, Some(json!({"ttft_ms": 12.5})));
    assert_eq!(
        store
            .list_conversations(&ListQuery::default())
            .unwrap()
            .len(),
        2
    );
}
