//! Speculative decoding on the real SmolLM2 model: n-gram lookup and a draft model give the
//! same greedy answers as decoding one token per step, alone and beside other sequences (one
//! of which does not speculate: a constrained request, or one sent with `speculate: false`,
//! which also keeps one token per step), the same seeded answers at a
//! temperature above zero, and their guesses are counted; a draft model whose vocabulary
//! differs is refused at load with a clear error.

mod common;

use common::{chat, collect_all, greedy_request, TestEngine};
use hearth_protocol::{
    ErrorKind, GenerateRequest, LoadParams, OutputConstraint, Prompt, SamplingParams,
    SpeculativeMode,
};

/// A prompt whose answer repeats its input, so n-gram lookup has something to find.
const REWRITE: &str = "Repeat this text exactly: The lighthouse keeper climbed the stairs every \
evening, trimmed the wick, polished the lens and watched the ships pass safely in the dark.";

fn prompts() -> Vec<Prompt> {
    [
        REWRITE,
        "What is the capital of France?",
        "Write one sentence about the sea.",
    ]
    .iter()
    .map(|text| chat(text))
    .collect()
}

fn params(speculative: SpeculativeMode) -> LoadParams {
    LoadParams {
        n_parallel: 3,
        n_ctx: 3 * 512,
        prefix_cache: false,
        speculative,
        draft_model: (speculative == SpeculativeMode::Draft).then(hearth_testkit::smollm2),
        ..LoadParams::default()
    }
}

fn engine(speculative: SpeculativeMode) -> TestEngine {
    TestEngine::with_model(&hearth_testkit::smollm2(), params(speculative)).0
}

const ANSWER_TOKENS: u32 = 48;

/// Each prompt's answer alone, then all of them at once (texts, and drafted/accepted sums).
fn answers(engine: &mut TestEngine) -> (Vec<String>, Vec<String>, u32, u32) {
    let mut drafted = 0;
    let mut accepted = 0;
    let alone = prompts()
        .into_iter()
        .map(|prompt| {
            let outcome =
                engine.generate(prompt, SamplingParams::greedy(), Some(ANSWER_TOKENS), &[]);
            drafted += outcome.done().1.drafted_tokens;
            accepted += outcome.done().1.accepted_tokens;
            outcome.text()
        })
        .collect();
    let ids: Vec<u64> = prompts()
        .into_iter()
        .map(|prompt| engine.submit_request(greedy_request(prompt, ANSWER_TOKENS)))
        .collect();
    let outcomes = collect_all(engine, &ids);
    let together = ids.iter().map(|id| outcomes[id].text()).collect();
    (alone, together, drafted, accepted)
}

#[test]
fn ngram_and_draft_speculation_keep_greedy_answers_alone_and_batched() {
    let (plain_alone, plain_together, drafted, _) = answers(&mut engine(SpeculativeMode::Off));
    assert_eq!(drafted, 0, "no guesses without speculation");
    assert_eq!(plain_alone, plain_together, "batching changed an answer");
    assert!(
        plain_alone[0].contains("lighthouse keeper climbed"),
        "the rewrite prompt is repeated: {}",
        plain_alone[0]
    );
    for mode in [SpeculativeMode::Ngram, SpeculativeMode::Draft] {
        let (alone, together, drafted, accepted) = answers(&mut engine(mode));
        assert_eq!(alone, plain_alone, "{mode:?} changed an answer");
        assert_eq!(
            together, plain_alone,
            "{mode:?} changed an answer beside others"
        );
        assert!(
            drafted > 0 && accepted > 0,
            "{mode:?}: {accepted}/{drafted}"
        );
        assert!(accepted <= drafted);
    }
}

#[test]
fn a_seeded_answer_at_temperature_is_the_same_with_guesses() {
    // Every token, guessed or not, is drawn by the request's own sampler chain in order, so a
    // seeded answer is the same (`speculative::acceptance` proves the rule in general).
    let sampling = SamplingParams {
        temperature: 0.8,
        seed: Some(7),
        ..SamplingParams::default()
    };
    let answer = |mode| {
        let outcome =
            engine(mode).generate(chat(REWRITE), sampling.clone(), Some(ANSWER_TOKENS), &[]);
        (outcome.text(), outcome.done().1.drafted_tokens)
    };
    let (plain, _) = answer(SpeculativeMode::Off);
    let (guessed, drafted) = answer(SpeculativeMode::Ngram);
    assert_eq!(guessed, plain);
    assert!(drafted > 0);
}

#[test]
fn a_request_that_does_not_speculate_runs_beside_one_that_does() {
    let mut engine = engine(SpeculativeMode::Ngram);
    let constrained = GenerateRequest {
        constraint: Some(OutputConstraint::JsonObject),
        ..greedy_request(chat("Give a JSON object with a name."), 24)
    };
    let alone = {
        let id = engine.submit_request(constrained.clone());
        engine.collect(id).text()
    };
    let ids = [
        engine.submit_request(greedy_request(chat(REWRITE), ANSWER_TOKENS)),
        engine.submit_request(constrained),
    ];
    let outcomes = collect_all(&engine, &ids);
    assert!(outcomes[&ids[0]].done().1.drafted_tokens > 0);
    assert_eq!(
        outcomes[&ids[1]].done().1.drafted_tokens,
        0,
        "a constrained request never guesses"
    );
    assert_eq!(outcomes[&ids[1]].text(), alone);
}

/// The neighbour of `hearth bench --neighbour`: a request sent with `speculate: false` beside
/// one that speculates keeps its greedy answer and one token per step (it guesses nothing,
/// though its prompt is one n-gram lookup guesses well on), and so does the other.
#[test]
fn a_request_that_opts_out_keeps_its_answer_and_one_token_per_step_beside_one_that_speculates() {
    let mut engine = engine(SpeculativeMode::Ngram);
    let neighbour = GenerateRequest {
        speculate: false,
        ..greedy_request(chat(REWRITE), ANSWER_TOKENS)
    };
    let allowed_id = engine.submit_request(greedy_request(chat(REWRITE), ANSWER_TOKENS));
    let allowed = engine.collect(allowed_id);
    assert!(
        allowed.done().1.drafted_tokens > 0,
        "the prompt is guessable"
    );
    let (_, _, steps_before, _) = engine.stats();
    let alone_id = engine.submit_request(neighbour.clone());
    let alone = engine.collect(alone_id);
    let (_, _, steps_after, _) = engine.stats();
    assert_eq!(alone.done().1.drafted_tokens, 0);
    assert_eq!(alone.text(), allowed.text());
    // One step computes the prompt and gives the first token, then one token per step.
    assert_eq!(
        steps_after - steps_before,
        u64::from(alone.done().1.generated_tokens)
    );
    let ids = [
        engine.submit_request(greedy_request(chat(REWRITE), ANSWER_TOKENS)),
        engine.submit_request(neighbour),
    ];
    let outcomes = collect_all(&engine, &ids);
    // Beside a decoding neighbour its guesses are bounded by what they cost the neighbour
    // (`PrefillPacer::guess_budget`: none on this CPU once measured), never its answer.
    assert_eq!(outcomes[&ids[0]].text(), allowed.text());
    let beside = &outcomes[&ids[1]];
    assert_eq!(beside.done().1.drafted_tokens, 0);
    assert_eq!(beside.done().1.accepted_tokens, 0);
    assert_eq!(beside.text(), alone.text());
}

/// A proposed draft (the catalog's) is loaded only when the planner advises it: SmolLM2 as
/// its own draft costs about a decode step per guess on the CPU, so even at a measured
/// acceptance of 1 the worker loads the model without speculation and says why; the same
/// draft named by the user is loaded as asked.
#[test]
fn a_proposed_draft_the_planner_does_not_advise_is_left_out() {
    let proposed = LoadParams {
        draft_when_advised: true,
        draft_acceptance: Some(1.0),
        ..params(SpeculativeMode::Draft)
    };
    let (mut engine, info) = TestEngine::with_model(&hearth_testkit::smollm2(), proposed);
    assert_eq!(info.speculative, SpeculativeMode::Off);
    assert_eq!(info.draft_model, None);
    let verdict = info.draft_verdict.expect("a verdict on the proposed draft");
    assert!(!verdict.advised && verdict.fits, "{verdict:?}");
    assert!(verdict.predicted_speedup < 1.0, "{verdict:?}");
    assert_eq!(verdict.acceptance_rate, 1.0);
    assert_eq!(
        verdict.acceptance_source,
        hearth_protocol::DraftAcceptanceSource::Measured
    );
    let outcome = engine.generate(chat(REWRITE), SamplingParams::greedy(), Some(8), &[]);
    assert_eq!(outcome.done().1.drafted_tokens, 0);

    let info = engine
        .load(&hearth_testkit::smollm2(), params(SpeculativeMode::Draft))
        .unwrap();
    assert_eq!(info.speculative, SpeculativeMode::Draft);
    assert!(info.draft_verdict.is_none());
}

#[test]
fn a_draft_model_with_another_vocabulary_is_refused_at_load() {
    let mut engine = TestEngine::start();
    let error = engine
        .load(
            &hearth_testkit::smollm2(),
            LoadParams {
                speculative: SpeculativeMode::Draft,
                draft_model: Some(hearth_testkit::gemma3()),
                ..LoadParams::default()
            },
        )
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::LoadFailed);
    assert!(
        error.message.contains("draft model cannot guess"),
        "{}",
        error.message
    );
    let error = engine
        .load(
            &hearth_testkit::smollm2(),
            LoadParams {
                speculative: SpeculativeMode::Draft,
                ..LoadParams::default()
            },
        )
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::InvalidRequest);
}
