//! Damage the store meets and survives: message rows and conversation headers corrupted
//! behind its back with raw SQL (one item hidden with a notice, the rest kept), and exports
//! that are not what they claim (refused, naming the field).

use super::*;

#[test]
fn a_corrupt_row_hides_one_message_and_keeps_the_rest() {
    let (_folder, store) = open();
    let conversation = store
        .create_conversation(NewConversation {
            title: Some("Fragile".into()),
            ..NewConversation::default()
        })
        .unwrap();
    let mut ids = Vec::new();
    for text in [
        "first",
        "bad utf-8",
        "bad metrics",
        "null text",
        "bad role",
        "last",
    ] {
        ids.push(
            store
                .append_message(conversation.id, message(Role::User, text))
                .unwrap()
                .id,
        );
    }
    let connection = raw(&store);
    connection
        .execute(
            "UPDATE messages SET content = CAST(x'48ff6c6c6f' AS TEXT) WHERE id = ?1",
            [ids[1]],
        )
        .unwrap();
    connection
        .execute(
            "UPDATE messages SET metrics = '{not json' WHERE id = ?1",
            [ids[2]],
        )
        .unwrap();
    // The schema says NOT NULL; an old bug or a manual edit can still get one in.
    connection
        .execute_batch(
            "PRAGMA writable_schema = ON;
             UPDATE sqlite_schema SET sql = replace(sql, 'content         TEXT NOT NULL', 'content TEXT') WHERE name = 'messages';
             PRAGMA writable_schema = OFF;"
        )
        .unwrap();
    drop(connection);
    let connection = raw(&store);
    connection
        .execute("UPDATE messages SET content = NULL WHERE id = ?1", [ids[3]])
        .unwrap();
    connection
        .execute(
            "UPDATE messages SET role = 'wizard' WHERE id = ?1",
            [ids[4]],
        )
        .unwrap();
    drop(connection);

    // A fresh store reads the corrupted file (no cached state involved).
    let path = store.path().to_path_buf();
    drop(store);
    let store = ConversationStore::open(&path).unwrap();
    let messages = store.messages(conversation.id).unwrap();
    assert_eq!(messages.len(), 6, "every row is listed");
    let shown: Vec<&str> = messages
        .iter()
        .filter(|m| !m.hidden)
        .map(|m| m.content.as_str())
        .collect();
    assert_eq!(shown, vec!["first", "last"]);
    let notices: Vec<&str> = messages
        .iter()
        .filter_map(|m| m.notice.as_deref())
        .collect();
    assert_eq!(notices.len(), 4);
    assert!(notices[0].contains("not valid UTF-8"), "{}", notices[0]);
    assert!(
        notices[1].contains("metrics are not valid JSON")
            || notices[1].contains("the metrics is not valid JSON"),
        "{}",
        notices[1]
    );
    assert!(notices[2].contains("missing"), "{}", notices[2]);
    assert!(notices[3].contains("role"), "{}", notices[3]);
    assert!(messages
        .iter()
        .filter(|m| m.hidden)
        .all(|m| m.content.is_empty()));

    // The list, the exports and new messages still work.
    assert_eq!(
        store
            .list_conversations(&ListQuery::default())
            .unwrap()
            .len(),
        1
    );
    let markdown = store.export_markdown(conversation.id).unwrap();
    assert!(markdown.contains("first") && markdown.contains("could not be read"));
    let exported = store.export_json(conversation.id).unwrap();
    assert_eq!(exported["messages"].as_array().unwrap().len(), 6);
    store
        .append_message(conversation.id, message(Role::User, "still works"))
        .unwrap();
}

#[test]
fn a_corrupt_conversation_header_is_shown_with_a_notice() {
    let (_folder, store) = open();
    let conversation = store
        .create_conversation(NewConversation::default())
        .unwrap();
    store
        .append_message(conversation.id, message(Role::User, "hello"))
        .unwrap();
    raw(&store)
        .execute(
            "UPDATE conversations SET title = CAST(x'ff' AS TEXT), settings = 'oops' WHERE id = ?1",
            [conversation.id],
        )
        .unwrap();
    let listed = store.list_conversations(&ListQuery::default()).unwrap();
    assert_eq!(listed.len(), 1);
    let notice = listed[0].notice.as_deref().unwrap();
    assert!(
        notice.contains("title") && notice.contains("settings"),
        "{notice}"
    );
    assert_eq!(listed[0].settings, json!({}));
    assert_eq!(store.messages(conversation.id).unwrap()[0].content, "hello");
}

#[test]
fn corrupt_exports_are_refused_naming_the_field() {
    let (_folder, store) = open();
    let (id, _) = two_turns(&store);
    let good = store.export_json(id).unwrap();
    let broken = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut document = good.clone();
        edit(&mut document);
        match hearth_store::export::parse_json(&document) {
            Err(StoreError::InvalidImport { field, .. }) => field,
            other => panic!("accepted a broken export: {other:?}"),
        }
    };
    assert_eq!(broken(&|d| d["format"] = json!("something-else")), "format");
    assert_eq!(
        broken(&|d| d["schema_version"] = json!(9999)),
        "schema_version"
    );
    assert_eq!(broken(&|d| d["messages"] = json!("nope")), "messages");
    assert_eq!(
        broken(&|d| d["messages"][2]["role"] = json!("wizard")),
        "messages[2].role"
    );
    assert_eq!(
        broken(&|d| d["messages"][1]["content"] = json!(5)),
        "messages[1].content"
    );
    assert_eq!(
        broken(&|d| d["messages"][0]["created_at"] = json!(-4)),
        "messages[0].created_at"
    );
    assert_eq!(broken(&|d| d["settings"] = json!([1])), "settings");
    assert_eq!(broken(&|d| *d = json!([1, 2])), "(document)");
    // A title the store refuses creates nothing.
    let mut bad_title = hearth_store::export::parse_json(&good).unwrap();
    bad_title.conversation.title = Some("a\u{7}b".into());
    assert!(store.import_conversation(bad_title).is_err());
    assert_eq!(
        store
            .list_conversations(&ListQuery::default())
            .unwrap()
            .len(),
        1
    );
}
