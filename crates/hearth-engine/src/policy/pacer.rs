//! The step pacer: learns what a step costs from measured steps, and bounds what one step
//! adds beside the sequences it decodes: prompt tokens (prefill chunks, within
//! `max_slowdown` of a decode-only step) and speculative guesses (within
//! [`MAX_NEIGHBOUR_SLOWDOWN`] while another sequence decodes in the same step).

/// The fewest prompt tokens a step prefills while others decode, so a prompt always advances.
/// One: on a 2-core CPU a single prompt token beside a decode step already costs a third of
/// that step, and a larger floor would break the slowdown bound (measured: a floor of 4 let a
/// 2,000-token prompt raise a decoding stream's ITL p95 3.7x instead of about 2x).
pub const MIN_PREFILL_CHUNK: u32 = 1;
/// Weight of the newest step in the running step-time estimates.
const STEP_TIME_SMOOTHING: f64 = 0.2;

/// How much slower a step may get from one sequence's speculative guesses while another
/// sequence decodes in it: 1.1, so a sequence that is not speculating (or has nothing to
/// guess) is slowed by at most 10%. On a CPU, where each verified position costs about a fifth
/// of a one-token step (measured: a 10-position batch 3.1x a 2-position one, SmolLM2 Q4_1,
/// 2 cores), that leaves no guesses while another stream decodes; on a GPU, where a step is
/// bound by reading the weights and extra positions are nearly free, it leaves many.
pub const MAX_NEIGHBOUR_SLOWDOWN: f64 = 1.1;
/// Guesses a step may verify while another sequence decodes, before their cost is measured:
/// one, so the cost is learnt at a bounded price.
const GUESSES_BEFORE_MEASURING: u32 = 1;

/// Learns what a step costs, to size prefill chunks so that decoding streams are slowed by at
/// most a bounded factor, and to bound the speculative guesses a step verifies beside another
/// decoding sequence. Model: step time = decode step time + prompt tokens × cost per prompt
/// token, and a decode step's time = plain step time (one token per decoding sequence) +
/// guesses × cost per guess, each tracked as a moving average of measured steps. A guess
/// costs more than a prompt token: its position computes logits.
#[derive(Debug, Clone)]
pub struct PrefillPacer {
    max_slowdown: f64,
    /// A step without prompt tokens (with whatever guesses the streams verify): what a
    /// prefill chunk must not slow by more than `max_slowdown`.
    decode_step_ms: Option<f64>,
    prefill_ms_per_token: Option<f64>,
    /// A step without prompt tokens or guesses: what guesses must not slow by more than
    /// [`MAX_NEIGHBOUR_SLOWDOWN`].
    plain_step_ms: Option<f64>,
    guess_ms: Option<f64>,
}

impl PrefillPacer {
    pub fn new(max_slowdown: f64) -> Self {
        Self {
            max_slowdown: max_slowdown.max(1.0),
            decode_step_ms: None,
            prefill_ms_per_token: None,
            plain_step_ms: None,
            guess_ms: None,
        }
    }

    fn smooth(previous: Option<f64>, sample: f64) -> f64 {
        match previous {
            Some(previous) => previous + STEP_TIME_SMOOTHING * (sample - previous),
            None => sample,
        }
    }

    /// Records a finished step: how long it took, how many prompt tokens it prefilled, how
    /// many sequences it decoded (one token each) and how many guesses it verified beside
    /// them. A guess's cost is learnt only from steps without prompt tokens, once a plain
    /// step's is known (else it would carry the whole step).
    pub fn record(
        &mut self,
        step_ms: f64,
        prefill_tokens: u32,
        decoding_sequences: u32,
        guesses: u32,
    ) {
        if !step_ms.is_finite() || step_ms <= 0.0 {
            return;
        }
        if prefill_tokens > 0 {
            let base = if decoding_sequences > 0 {
                self.decode_step_ms.unwrap_or(0.0)
            } else {
                0.0
            };
            let per_token = ((step_ms - base) / f64::from(prefill_tokens)).max(0.0);
            self.prefill_ms_per_token = Some(Self::smooth(self.prefill_ms_per_token, per_token));
            return;
        }
        if decoding_sequences == 0 {
            return;
        }
        self.decode_step_ms = Some(Self::smooth(self.decode_step_ms, step_ms));
        if guesses == 0 {
            self.plain_step_ms = Some(Self::smooth(self.plain_step_ms, step_ms));
        } else if let Some(plain) = self.plain_step_ms {
            let per_guess = ((step_ms - plain) / f64::from(guesses)).max(0.0);
            self.guess_ms = Some(Self::smooth(self.guess_ms, per_guess));
        }
    }

    /// Prompt tokens this step may prefill. With nothing decoding, the whole batch; otherwise
    /// as many as keep the step within `max_slowdown` × a decode-only step (at least
    /// [`MIN_PREFILL_CHUNK`]). Before any measurement, the minimum.
    pub fn budget(&self, n_batch: u32, decoding_sequences: u32) -> u32 {
        let room = n_batch.saturating_sub(decoding_sequences);
        if decoding_sequences == 0 {
            return room;
        }
        let tokens = match (self.decode_step_ms, self.prefill_ms_per_token) {
            (Some(decode_ms), Some(per_token)) if per_token > 0.0 => {
                let allowance = (self.max_slowdown - 1.0) * decode_ms;
                (allowance / per_token).floor().min(f64::from(room)) as u32
            }
            _ => MIN_PREFILL_CHUNK,
        };
        tokens.max(MIN_PREFILL_CHUNK).min(room)
    }

    /// Guesses this step may verify, all sequences together, when `decoding_sequences`
    /// decode in it: no bound for one sequence alone (its own guesses pay for themselves);
    /// beside others, as many as keep the step within [`MAX_NEIGHBOUR_SLOWDOWN`] × a
    /// step without guesses, so a sequence that is not speculating is not slowed beyond it.
    /// Before a guess's cost is measured, [`GUESSES_BEFORE_MEASURING`]; before a step
    /// without guesses has been, none (the first such step measures it).
    pub fn guess_budget(&self, decoding_sequences: u32) -> u32 {
        if decoding_sequences <= 1 {
            return u32::MAX;
        }
        match (self.plain_step_ms, self.guess_ms) {
            (None, _) => 0,
            (Some(_), None) => GUESSES_BEFORE_MEASURING,
            (Some(plain_ms), Some(per_guess)) if per_guess > 0.0 => {
                let allowance = (MAX_NEIGHBOUR_SLOWDOWN - 1.0) * plain_ms;
                (allowance / per_guess).floor().min(f64::from(u32::MAX)) as u32
            }
            (Some(_), Some(_)) => u32::MAX,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pacer_keeps_steps_within_the_slowdown() {
        let mut pacer = PrefillPacer::new(2.0);
        assert_eq!(
            pacer.budget(512, 0),
            512,
            "nothing decoding: the whole batch"
        );
        assert_eq!(
            pacer.budget(512, 1),
            MIN_PREFILL_CHUNK,
            "before measuring: the minimum"
        );
        for _ in 0..20 {
            pacer.record(10.0, 0, 1, 0); // a decode-only step takes 10 ms
            pacer.record(10.0 + 8.0 * 1.25, 8, 1, 0); // each prompt token adds 1.25 ms
        }
        // 2x a 10 ms step leaves 10 ms for prompt tokens at 1.25 ms each.
        assert_eq!(pacer.budget(512, 1), 8);
        let lenient = PrefillPacer {
            max_slowdown: 100.0,
            ..pacer.clone()
        };
        assert_eq!(lenient.budget(512, 1), 511, "bounded by the batch");
        pacer.record(f64::NAN, 3, 1, 0);
        assert_eq!(pacer.budget(512, 1), 8, "bad samples are ignored");
    }

    #[test]
    fn guesses_beside_another_stream_keep_it_within_the_neighbour_bound() {
        let mut pacer = PrefillPacer::new(2.0);
        assert_eq!(pacer.guess_budget(1), u32::MAX, "alone: no bound");
        assert_eq!(
            pacer.guess_budget(2),
            0,
            "no decode-only step measured yet: none"
        );
        // A guess measured before a step without guesses is not attributed.
        pacer.record(30.0, 0, 1, 8);
        assert_eq!(pacer.guess_budget(2), 0);
        pacer.record(10.0, 0, 2, 0);
        assert_eq!(
            pacer.guess_budget(2),
            GUESSES_BEFORE_MEASURING,
            "one, to learn the cost"
        );
        // A CPU: each verified guess adds 2 ms to a 10 ms step, so 10% leaves none.
        for _ in 0..20 {
            pacer.record(10.0, 0, 2, 0);
            pacer.record(10.0 + 2.0 * 8.0, 0, 2, 8);
        }
        assert_eq!(pacer.guess_budget(2), 0);
        // A GPU: 0.05 ms a guess on a 10 ms step leaves 20.
        let mut gpu = PrefillPacer::new(2.0);
        for _ in 0..40 {
            gpu.record(10.0, 0, 2, 0);
            gpu.record(10.0 + 0.05 * 8.0, 0, 2, 8);
        }
        assert_eq!(gpu.guess_budget(2), 20);
        // Steps that prefill teach the prompt's cost, never a guess's.
        let before = gpu.clone();
        gpu.record(500.0, 100, 2, 8);
        assert_eq!(gpu.guess_budget(2), before.guess_budget(2));
        // A stream speculating alone still paces prefills: its steps are the decode steps.
        let mut alone = PrefillPacer::new(2.0);
        for _ in 0..20 {
            alone.record(30.0, 0, 1, 8);
            alone.record(30.0 + 10.0 * 3.0, 10, 1, 8);
        }
        assert_eq!(alone.budget(512, 9), 10);
    }
}
