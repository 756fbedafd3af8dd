use super::*;

fn options(data_dir: &Path) -> ServerOptions {
    let mut options = ServerOptions::new(data_dir, crate::test_support::missing_worker());
    options.port = 0;
    options
}

#[test]
fn unknown_models_are_refused_at_startup() {
    let home = tempfile::tempdir().unwrap();
    let library = ModelLibrary::new(home.path().join("models"));
    let error = resolve_models(&["no-such-model".into()], &library).unwrap_err();
    assert!(error.to_string().contains("no-such-model"));
}

#[test]
fn files_with_the_same_name_get_distinct_ids() {
    let home = tempfile::tempdir().unwrap();
    let (a, b) = (home.path().join("a"), home.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    std::fs::write(a.join("m.gguf"), b"x").unwrap();
    std::fs::write(b.join("m.gguf"), b"x").unwrap();
    let library = ModelLibrary::new(home.path().join("models"));
    let specs = [
        a.join("m.gguf").display().to_string(),
        b.join("m.gguf").display().to_string(),
    ];
    let (by_path, preload) = resolve_models(&specs, &library).unwrap();
    assert_eq!(by_path[0].id, "m");
    assert_eq!(by_path[1].id, "m-2");
    assert_eq!(preload.len(), 2);
}

#[tokio::test]
async fn unsafe_options_are_refused_before_binding() {
    let home = tempfile::tempdir().unwrap();
    let mut beyond_loopback = options(home.path());
    beyond_loopback.host = IpAddr::from([0, 0, 0, 0]);
    assert!(matches!(
        start(beyond_loopback).await.unwrap_err(),
        StartError::Security(SecurityConfigError::NonLoopbackWithoutKey { .. })
    ));
    let mut no_sequences = options(home.path());
    no_sequences.parallel = 0;
    assert!(matches!(
        start(no_sequences).await.unwrap_err(),
        StartError::ZeroParallel
    ));
    let mut huge = options(home.path());
    huge.n_ctx = u32::MAX;
    assert!(matches!(
        start(huge).await.unwrap_err(),
        StartError::ContextTooLarge
    ));
    assert!(
        !home
            .path()
            .join(crate::conversations::STORE_FILE_NAME)
            .exists(),
        "nothing is created for refused options"
    );
}

/// Starts on a free port, answers with either key, and stops: the port closes.
#[tokio::test]
async fn starts_in_process_with_several_keys_and_shuts_down() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let home = tempfile::tempdir().unwrap();
    let mut options = options(home.path());
    options.api_keys = vec!["launch-token".into(), "sk-user".into()];
    let server = start(options).await.unwrap();
    let address = server.local_addr();
    assert!(address.ip().is_loopback() && address.port() != 0);
    assert!(server.served_model_ids().is_empty());
    let status_of = |key: &'static str| async move {
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let request = format!(
            "GET /v1/models HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer.split(' ').nth(1).unwrap_or_default().to_string()
    };
    assert_eq!(status_of("launch-token").await, "200");
    assert_eq!(status_of("sk-user").await, "200");
    assert_eq!(status_of("wrong").await, "401");
    server.shutdown().await.unwrap();
    assert!(tokio::net::TcpStream::connect(address).await.is_err());
}

/// The desktop's choice: a port another program holds gives way to a free one, and
/// `/api/system` names the taken port so the UI can say so; `hearth serve` fails instead.
#[tokio::test]
async fn a_taken_port_gives_way_to_a_free_one_only_when_asked_and_is_reported() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let home = tempfile::tempdir().unwrap();
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap().port();
    let mut strict = options(home.path());
    strict.port = taken;
    assert!(matches!(
        start(strict).await.unwrap_err(),
        StartError::Bind { .. }
    ));

    let mut lenient = options(home.path());
    lenient.port = taken;
    lenient.port_fallback = true;
    lenient.api_keys = vec!["sk-user".into()];
    let server = start(lenient).await.unwrap();
    let address = server.local_addr();
    assert_ne!(address.port(), taken);
    assert_eq!(server.port_taken(), Some(taken));
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!(
        "GET /api/system HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer sk-user\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.contains(&format!("\"configured_port_taken\":{taken}")),
        "{answer}"
    );
    server.shutdown().await.unwrap();

    // A free configured port is used as it is, and nothing is reported.
    drop(holder);
    let mut free = options(home.path());
    free.port = taken;
    free.port_fallback = true;
    let server = start(free).await.unwrap();
    assert_eq!(server.local_addr().port(), taken);
    assert_eq!(server.port_taken(), None);
    server.shutdown().await.unwrap();
}
