//! The server's Prometheus metrics, written in the text exposition format by hand (a few
//! counters and histograms do not need a metrics library).
//!
//! Per-request latency figures come unchanged from the engine's `RequestMetrics` (TTFT, TPOT,
//! every inter-token gap); the queue depth and running sequences are read from each loaded
//! model's scheduler when `/metrics` is scraped, so they are never stale.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use hearth_protocol::{FinishReason, RequestMetrics};

/// Bucket bounds (seconds) for time to first token: prefill of long prompts on a CPU takes
/// seconds, so the buckets reach a minute.
pub const TTFT_BUCKETS_SECONDS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Bucket bounds (seconds) for per-token times (TPOT and ITL): from fast GPUs (a few ms) to
/// large models on a CPU (a second).
pub const TOKEN_BUCKETS_SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
/// Bucket bounds (seconds) for a whole request.
pub const E2E_BUCKETS_SECONDS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// A cumulative histogram with fixed bounds.
#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative); the last is the +Inf bucket.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, value: f64) {
        if !value.is_finite() {
            return;
        }
        let bucket = self
            .bounds
            .iter()
            .position(|bound| value <= *bound)
            .unwrap_or(self.bounds.len());
        self.counts[bucket] += 1;
        self.sum += value;
        self.count += 1;
    }

    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            cumulative += count;
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

/// What is counted per model.
#[derive(Debug, Clone)]
struct ModelCounters {
    ttft: Histogram,
    tpot: Histogram,
    itl: Histogram,
    e2e: Histogram,
    prompt_tokens: u64,
    cached_prompt_tokens: u64,
    generated_tokens: u64,
    drafted_tokens: u64,
    accepted_tokens: u64,
    finished: BTreeMap<&'static str, u64>,
    client_disconnects: u64,
    loads: u64,
    last_load_seconds: Option<f64>,
    /// Inputs embedded (`/v1/embeddings`, Ollama's `/api/embed`) and their tokens.
    embedded_inputs: u64,
    embedding_tokens: u64,
}

impl Default for ModelCounters {
    fn default() -> Self {
        Self {
            ttft: Histogram::new(TTFT_BUCKETS_SECONDS),
            tpot: Histogram::new(TOKEN_BUCKETS_SECONDS),
            itl: Histogram::new(TOKEN_BUCKETS_SECONDS),
            e2e: Histogram::new(E2E_BUCKETS_SECONDS),
            prompt_tokens: 0,
            cached_prompt_tokens: 0,
            generated_tokens: 0,
            drafted_tokens: 0,
            accepted_tokens: 0,
            finished: BTreeMap::new(),
            client_disconnects: 0,
            loads: 0,
            last_load_seconds: None,
            embedded_inputs: 0,
            embedding_tokens: 0,
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    /// HTTP responses by (route, status).
    requests: BTreeMap<(String, u16), u64>,
    models: BTreeMap<String, ModelCounters>,
    /// Streams that ended with an error event after the 200.
    stream_errors: u64,
}

/// The live state of one loaded model's scheduler, read at scrape time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerGauges {
    pub model: String,
    pub queued: u32,
    pub running: u32,
    pub n_parallel: u32,
    /// Batches the engine decoded since the model was loaded.
    pub steps: u64,
}

/// All counters of one server; cheap to share behind an `Arc`.
#[derive(Debug, Default)]
pub struct Metrics {
    counters: Mutex<Counters>,
    /// Where answers that speculated with a draft model add to the measured acceptance.
    draft_acceptance: Option<std::sync::Arc<crate::draft_acceptance::DraftAcceptanceRecorder>>,
}

const MILLIS_PER_SECOND: f64 = 1000.0;

impl Metrics {
    fn with<T>(&self, update: impl FnOnce(&mut Counters) -> T) -> Option<T> {
        self.counters
            .lock()
            .ok()
            .map(|mut counters| update(&mut counters))
    }

    /// One HTTP response, by route (the matched route pattern, never the raw path, so a
    /// scanner cannot blow up the label set) and status.
    pub fn record_response(&self, route: &str, status: u16) {
        self.with(|c| *c.requests.entry((route.to_string(), status)).or_default() += 1);
    }

    /// The same, also counting speculative decoding's acceptance into `recorder`.
    pub fn with_draft_acceptance(
        self,
        recorder: std::sync::Arc<crate::draft_acceptance::DraftAcceptanceRecorder>,
    ) -> Self {
        Self {
            draft_acceptance: Some(recorder),
            ..self
        }
    }

    pub fn draft_acceptance(&self) -> Option<&crate::draft_acceptance::DraftAcceptanceRecorder> {
        self.draft_acceptance.as_deref()
    }

    /// A finished generation's figures.
    pub fn record_generation(
        &self,
        model: &str,
        finish_reason: FinishReason,
        metrics: &RequestMetrics,
    ) {
        if let Some(recorder) = &self.draft_acceptance {
            recorder.record(model, metrics);
        }
        self.with(|c| {
            let counters = c.models.entry(model.to_string()).or_default();
            counters.prompt_tokens += u64::from(metrics.prompt_tokens);
            counters.cached_prompt_tokens += u64::from(metrics.cached_prompt_tokens);
            counters.generated_tokens += u64::from(metrics.generated_tokens);
            counters.drafted_tokens += u64::from(metrics.drafted_tokens);
            counters.accepted_tokens += u64::from(metrics.accepted_tokens);
            *counters.finished.entry(finish_reason.as_str()).or_default() += 1;
            if metrics.generated_tokens > 0 {
                counters.ttft.observe(metrics.ttft_ms / MILLIS_PER_SECOND);
            }
            if metrics.generated_tokens > 1 {
                counters.tpot.observe(metrics.tpot_ms / MILLIS_PER_SECOND);
            }
            for gap in &metrics.itl_ms {
                counters.itl.observe(gap / MILLIS_PER_SECOND);
            }
            counters.e2e.observe(metrics.e2e_ms / MILLIS_PER_SECOND);
        });
    }

    /// An embedding request's inputs and their tokens.
    pub fn record_embeddings(&self, model: &str, inputs: usize, tokens: u32) {
        self.with(|c| {
            let counters = c.models.entry(model.to_string()).or_default();
            counters.embedded_inputs += inputs as u64;
            counters.embedding_tokens += u64::from(tokens);
        });
    }

    /// A client went away before its answer ended (its generation was cancelled).
    pub fn record_client_disconnect(&self, model: &str) {
        self.with(|c| {
            c.models
                .entry(model.to_string())
                .or_default()
                .client_disconnects += 1
        });
    }

    pub fn record_stream_error(&self) {
        self.with(|c| c.stream_errors += 1);
    }

    pub fn record_model_load(&self, model: &str, load_seconds: f64) {
        self.with(|c| {
            let counters = c.models.entry(model.to_string()).or_default();
            counters.loads += 1;
            counters.last_load_seconds = Some(load_seconds);
        });
    }

    /// The exposition text. `schedulers` are the loaded models' live gauges; `loading` the
    /// number of models being loaded now.
    pub fn render(&self, schedulers: &[SchedulerGauges], loading: usize) -> String {
        let mut out = String::new();
        let Some(()) = self.with(|c| write_counters(&mut out, c)) else {
            return out;
        };
        header(
            &mut out,
            "hearth_models_loaded",
            "gauge",
            "Models loaded and ready.",
        );
        let _ = writeln!(out, "hearth_models_loaded {}", schedulers.len());
        header(
            &mut out,
            "hearth_models_loading",
            "gauge",
            "Models being loaded now.",
        );
        let _ = writeln!(out, "hearth_models_loading {loading}");
        header(
            &mut out,
            "hearth_queue_depth",
            "gauge",
            "Requests waiting for a sequence slot.",
        );
        for gauges in schedulers {
            let _ = writeln!(
                out,
                "hearth_queue_depth{{model=\"{}\"}} {}",
                escape(&gauges.model),
                gauges.queued
            );
        }
        header(
            &mut out,
            "hearth_running_sequences",
            "gauge",
            "Sequences prefilling or decoding.",
        );
        for gauges in schedulers {
            let _ = writeln!(
                out,
                "hearth_running_sequences{{model=\"{}\"}} {}",
                escape(&gauges.model),
                gauges.running
            );
        }
        header(
            &mut out,
            "hearth_parallel_sequences",
            "gauge",
            "Sequence slots of the loaded model.",
        );
        for gauges in schedulers {
            let _ = writeln!(
                out,
                "hearth_parallel_sequences{{model=\"{}\"}} {}",
                escape(&gauges.model),
                gauges.n_parallel
            );
        }
        header(
            &mut out,
            "hearth_engine_steps_total",
            "counter",
            "Batches the engine decoded since the model was loaded (scheduler steps).",
        );
        for gauges in schedulers {
            let _ = writeln!(
                out,
                "hearth_engine_steps_total{{model=\"{}\"}} {}",
                escape(&gauges.model),
                gauges.steps
            );
        }
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A histogram series: name, help, and where its histogram is in a model's counters.
type HistogramSeries = (&'static str, &'static str, fn(&ModelCounters) -> &Histogram);
/// A counter series: name, help, and how to read it from a model's counters.
type CounterSeries = (&'static str, &'static str, fn(&ModelCounters) -> u64);

fn write_counters(out: &mut String, c: &Counters) {
    header(
        out,
        "hearth_http_requests_total",
        "counter",
        "HTTP responses by route and status.",
    );
    for ((route, status), count) in &c.requests {
        let _ = writeln!(
            out,
            "hearth_http_requests_total{{route=\"{}\",status=\"{status}\"}} {count}",
            escape(route)
        );
    }
    header(
        out,
        "hearth_stream_errors_total",
        "counter",
        "Streams that ended with an error event.",
    );
    let _ = writeln!(out, "hearth_stream_errors_total {}", c.stream_errors);

    let histograms: [HistogramSeries; 4] = [
        (
            "hearth_time_to_first_token_seconds",
            "Time from arrival to the first generated token (TTFT).",
            |m| &m.ttft,
        ),
        (
            "hearth_time_per_output_token_seconds",
            "Mean time per output token after the first (TPOT), per request.",
            |m| &m.tpot,
        ),
        (
            "hearth_inter_token_latency_seconds",
            "Every gap between two generated tokens (ITL).",
            |m| &m.itl,
        ),
        (
            "hearth_request_duration_seconds",
            "Time from arrival to the last token, per request.",
            |m| &m.e2e,
        ),
    ];
    for (name, help, histogram) in histograms {
        header(out, name, "histogram", help);
        for (model, counters) in &c.models {
            histogram(counters).write(out, name, &format!("model=\"{}\"", escape(model)));
        }
    }
    let totals: [CounterSeries; 9] = [
        (
            "hearth_prompt_tokens_total",
            "Prompt tokens of finished requests.",
            |m| m.prompt_tokens,
        ),
        (
            "hearth_draft_tokens_total",
            "Tokens guessed by speculative decoding and verified.",
            |m| m.drafted_tokens,
        ),
        (
            "hearth_draft_accepted_tokens_total",
            "Guessed tokens the model accepted.",
            |m| m.accepted_tokens,
        ),
        (
            "hearth_cached_prompt_tokens_total",
            "Prompt tokens reused from the KV cache.",
            |m| m.cached_prompt_tokens,
        ),
        (
            "hearth_generation_tokens_total",
            "Generated tokens of finished requests.",
            |m| m.generated_tokens,
        ),
        (
            "hearth_client_disconnects_total",
            "Answers cancelled because the client went away.",
            |m| m.client_disconnects,
        ),
        ("hearth_model_loads_total", "Model loads.", |m| m.loads),
        ("hearth_embedded_inputs_total", "Inputs embedded.", |m| {
            m.embedded_inputs
        }),
        (
            "hearth_embedding_tokens_total",
            "Tokens of the inputs embedded.",
            |m| m.embedding_tokens,
        ),
    ];
    for (name, help, value) in totals {
        header(out, name, "counter", help);
        for (model, counters) in &c.models {
            let _ = writeln!(
                out,
                "{name}{{model=\"{}\"}} {}",
                escape(model),
                value(counters)
            );
        }
    }
    header(
        out,
        "hearth_requests_finished_total",
        "counter",
        "Finished generations by finish reason.",
    );
    for (model, counters) in &c.models {
        for (reason, count) in &counters.finished {
            let _ = writeln!(
                out,
                "hearth_requests_finished_total{{model=\"{}\",finish_reason=\"{reason}\"}} {count}",
                escape(model)
            );
        }
    }
    header(
        out,
        "hearth_model_load_seconds",
        "gauge",
        "Duration of the model's last load.",
    );
    for (model, counters) in &c.models {
        if let Some(seconds) = counters.last_load_seconds {
            let _ = writeln!(
                out,
                "hearth_model_load_seconds{{model=\"{}\"}} {seconds}",
                escape(model)
            );
        }
    }
}

/// Escapes a label value (backslash, quote, newline), as the exposition format requires.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_with_sum_and_count() {
        let metrics = Metrics::default();
        let figures = RequestMetrics {
            prompt_tokens: 10,
            generated_tokens: 3,
            ttft_ms: 40.0,
            tpot_ms: 12.0,
            itl_ms: vec![10.0, 14.0],
            e2e_ms: 64.0,
            drafted_tokens: 4,
            accepted_tokens: 1,
            ..RequestMetrics::default()
        };
        metrics.record_generation("m", FinishReason::Stop, &figures);
        let text = metrics.render(&[], 0);
        assert!(
            text.contains("hearth_time_to_first_token_seconds_bucket{model=\"m\",le=\"0.05\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("hearth_time_to_first_token_seconds_bucket{model=\"m\",le=\"0.025\"} 0")
        );
        assert!(text.contains("hearth_inter_token_latency_seconds_count{model=\"m\"} 2"));
        assert!(
            text.contains("hearth_inter_token_latency_seconds_bucket{model=\"m\",le=\"+Inf\"} 2")
        );
        assert!(text.contains("hearth_prompt_tokens_total{model=\"m\"} 10"));
        assert!(text.contains("hearth_generation_tokens_total{model=\"m\"} 3"));
        assert!(text.contains("hearth_draft_tokens_total{model=\"m\"} 4"));
        assert!(text.contains("hearth_draft_accepted_tokens_total{model=\"m\"} 1"));
        assert!(
            text.contains("hearth_requests_finished_total{model=\"m\",finish_reason=\"stop\"} 1")
        );
    }

    #[test]
    fn scheduler_gauges_and_requests_are_rendered() {
        let metrics = Metrics::default();
        metrics.record_response("/v1/chat/completions", 200);
        metrics.record_response("/v1/chat/completions", 200);
        metrics.record_model_load("m", 0.25);
        let text = metrics.render(
            &[SchedulerGauges {
                model: "m".into(),
                queued: 2,
                running: 1,
                n_parallel: 4,
                steps: 17,
            }],
            0,
        );
        assert!(text.contains(
            "hearth_http_requests_total{route=\"/v1/chat/completions\",status=\"200\"} 2"
        ));
        assert!(text.contains("hearth_queue_depth{model=\"m\"} 2"));
        assert!(text.contains("hearth_running_sequences{model=\"m\"} 1"));
        assert!(text.contains("hearth_engine_steps_total{model=\"m\"} 17"));
        assert!(text.contains("hearth_model_load_seconds{model=\"m\"} 0.25"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
