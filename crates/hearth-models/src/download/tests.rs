use super::progress::{estimate_eta, smooth_rate};
use super::*;

#[test]
fn content_ranges() {
    assert_eq!(
        parse_content_range("bytes 100-199/200"),
        Some(ContentRange {
            start: 100,
            total: Some(200)
        })
    );
    assert_eq!(
        parse_content_range("bytes */500"),
        Some(ContentRange {
            start: 0,
            total: Some(500)
        })
    );
    assert_eq!(
        parse_content_range("bytes 5-9/*"),
        Some(ContentRange {
            start: 5,
            total: None
        })
    );
    for bad in ["", "bytes", "items 1-2/3", "bytes x-1/2", "bytes 1-2/x"] {
        assert_eq!(parse_content_range(bad), None, "{bad}");
    }
}

#[test]
fn backoff_doubles_up_to_the_cap() {
    let config = DownloadConfig {
        initial_backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(10),
        ..DownloadConfig::default()
    };
    let delays: Vec<u64> = (1..=6).map(|n| config.backoff(n).as_secs()).collect();
    assert_eq!(delays, [1, 2, 4, 8, 10, 10]);
    assert_eq!(config.backoff(1000), Duration::from_secs(10));
}

#[test]
fn rate_and_eta() {
    assert_eq!(smooth_rate(0.0, 100.0, 0.2), 100.0);
    let smoothed = smooth_rate(100.0, 200.0, 0.2);
    assert!(smoothed > 100.0 && smoothed < 200.0, "{smoothed}");
    assert_eq!(
        estimate_eta(50, Some(150), 10.0),
        Some(Duration::from_secs(10))
    );
    assert_eq!(estimate_eta(50, None, 10.0), None);
    assert_eq!(estimate_eta(50, Some(150), 0.0), None);
}

#[test]
fn magic_is_checked_across_chunk_boundaries() {
    assert!(check_gguf_magic(0, b"GGUF\x03\x00", "u").is_ok());
    assert!(check_gguf_magic(0, b"GG", "u").is_ok());
    assert!(check_gguf_magic(2, b"UF", "u").is_ok());
    assert!(check_gguf_magic(4, b"anything", "u").is_ok());
    assert!(check_gguf_magic(2, b"XX", "u").is_err());
    let error = check_gguf_magic(0, b"<!DOCTYPE html><html>", "u")
        .unwrap_err()
        .to_string();
    assert!(error.contains("HTML"), "{error}");
}

#[test]
fn control_cancel_wins_over_pause() {
    let control = DownloadControl::new();
    assert_eq!(control.requested(), None);
    control.cancel();
    control.pause();
    assert_eq!(control.requested(), Some(ControlRequest::Cancel));
    control.resume();
    control.pause();
    assert_eq!(control.requested(), Some(ControlRequest::Pause));
}
