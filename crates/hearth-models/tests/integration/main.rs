//! Integration tests of `hearth-models`, in one binary so the crate links once. HTTP tests use
//! a scripted server on 127.0.0.1 (never a model hub) and the real SmolLM2 test model, which
//! `scripts/fetch-test-models` puts in `~/.cache/hearth/test-models`.

mod catalog;
mod download;
mod gguf;
mod library;
mod manager;
mod remote_header;
mod split;
mod support;
