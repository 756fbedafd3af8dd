//! What this Hearth binary was built from, in one place: `hearth --version`, the server's
//! `GET /api/about` and through it the UI's About view all read these constants (`build.rs`
//! captures them when the crate is compiled).

/// Hearth's version (the workspace's).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The short git commit the binary was built from, or `unknown` outside a git checkout.
pub const COMMIT: &str = env!("HEARTH_GIT_COMMIT");
/// The version of the vendored `llama-cpp-sys-2` crate, which ships llama.cpp.
pub const LLAMA_CPP_SYS_VERSION: &str = env!("HEARTH_LLAMA_CPP_SYS_VERSION");
/// The version of ggml (llama.cpp's tensor library) in that llama.cpp.
pub const GGML_VERSION: &str = env!("HEARTH_GGML_VERSION");
/// `hearth --version`'s text after the program's name: one line, for people and scripts.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("HEARTH_GIT_COMMIT"),
    "; llama.cpp: llama-cpp-sys-2 ",
    env!("HEARTH_LLAMA_CPP_SYS_VERSION"),
    ", ggml ",
    env!("HEARTH_GGML_VERSION"),
    ")"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_values_are_filled_in() {
        assert!(!VERSION.is_empty());
        // A short hash in a checkout, `unknown` outside one.
        assert!(
            COMMIT == "unknown" || COMMIT.chars().all(|c| c.is_ascii_hexdigit()),
            "{COMMIT}"
        );
        assert_ne!(LLAMA_CPP_SYS_VERSION, "unknown");
        assert_eq!(GGML_VERSION.split('.').count(), 3, "{GGML_VERSION}");
        assert!(LONG_VERSION.starts_with(VERSION));
        assert!(LONG_VERSION.contains(COMMIT));
    }
}
