//! Reading a remote GGUF header with Range requests, before any download: the real Gemma 3
//! 270M file (a 6.2 MiB header in a 241 MiB file) served from 127.0.0.1.

use std::sync::Arc;

use hearth_models::{HubRepo, ModelsError, FIRST_HEADER_PREFIX_BYTES, MAX_HEADER_PREFIX_BYTES};

use crate::support::{fast_config, gemma3_path, hub_client, FileReply, Reply, TestServer};

const REPO: &str = "test-owner/gemma-GGUF";
const FILE: &str = "gemma-3-270m-q4_k_m.gguf";

fn gemma_server(honor_range: bool) -> (TestServer, u64) {
    let bytes = Arc::new(std::fs::read(gemma3_path()).expect("cannot read the Gemma test model"));
    let length = bytes.len() as u64;
    let server = TestServer::start(move |_, _| {
        let mut reply = FileReply::new(Arc::clone(&bytes));
        reply.honor_range = honor_range;
        Reply::File(reply)
    });
    (server, length)
}

#[test]
fn a_remote_header_parses_from_a_prefix_fetched_with_ranges() {
    let (server, file_length) = gemma_server(true);
    let hub = hub_client(&server, fast_config());
    let repo = HubRepo::parse(REPO).unwrap();
    let header = hub
        .fetch_gguf_header(&repo, "main", FILE, MAX_HEADER_PREFIX_BYTES)
        .unwrap();
    assert_eq!(header.gguf.architecture().unwrap(), "gemma3");
    assert!(!header.gguf.tensors().is_empty());
    assert_eq!(header.total_size, Some(file_length));
    // 1, 2, 4 and 8 MiB: a few round trips, a small part of the file.
    assert!(header.requests >= 2, "{header:?}");
    assert!(header.transferred_bytes < 16 * 1024 * 1024);
    assert!(header.transferred_bytes < file_length / 10);
    let requests = server.requests();
    assert_eq!(requests.len() as u32, header.requests);
    for request in &requests {
        assert_eq!(request.method, "GET");
        assert_eq!(request.path, format!("/{REPO}/resolve/main/{FILE}"));
        assert_eq!(request.range_start, Some(0));
        assert!(request.range_last.is_some(), "{request:?}");
    }
    assert_eq!(requests[0].range_last, Some(FIRST_HEADER_PREFIX_BYTES - 1));
}

#[test]
fn a_server_that_ignores_ranges_is_read_only_up_to_the_cap() {
    let (server, file_length) = gemma_server(false);
    let hub = hub_client(&server, fast_config());
    let repo = HubRepo::parse(REPO).unwrap();
    let (bytes, total) = hub
        .fetch_header_prefix(&repo, "main", FILE, FIRST_HEADER_PREFIX_BYTES)
        .unwrap();
    assert_eq!(bytes.len() as u64, FIRST_HEADER_PREFIX_BYTES);
    assert_eq!(total, Some(file_length));

    // Each whole-file answer is cut at the prefix asked for; the header still parses.
    let header = hub
        .fetch_gguf_header(&repo, "main", FILE, MAX_HEADER_PREFIX_BYTES)
        .unwrap();
    assert_eq!(header.gguf.architecture().unwrap(), "gemma3");
    assert!(header.transferred_bytes < file_length / 10);

    // A cap below the header's size is an error, never a longer read.
    let error = hub
        .fetch_gguf_header(&repo, "main", FILE, 2 * 1024 * 1024)
        .unwrap_err();
    assert!(
        matches!(&error, ModelsError::NotGguf { detail, .. } if detail.contains("does not fit")),
        "{error}"
    );
}
