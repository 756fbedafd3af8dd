use super::*;

const THINK: ThinkTags = ThinkTags {
    open: "<think>",
    close: "</think>",
};

fn syntax(tags: ThinkTags, opened_in_prompt: bool) -> ThinkingSyntax {
    ThinkingSyntax {
        open: tags.open.to_string(),
        close: tags.close.to_string(),
        opened_in_prompt,
    }
}

/// Splits `pieces` in order and returns both channels whole.
fn split(syntax: &ThinkingSyntax, pieces: &[&str]) -> (String, String) {
    let mut splitter = ReasoningSplitter::new(syntax);
    let (mut reasoning, mut content) = (String::new(), String::new());
    for piece in pieces {
        let out = splitter.push(piece);
        reasoning.push_str(&out.reasoning);
        content.push_str(&out.content);
    }
    let out = splitter.finish();
    reasoning.push_str(&out.reasoning);
    content.push_str(&out.content);
    (reasoning, content)
}

/// Every way of cutting `text` in two and in single characters gives the same split as the
/// whole text in one piece.
fn assert_split_everywhere(syntax: &ThinkingSyntax, text: &str, expected: (&str, &str)) {
    let expected = (expected.0.to_string(), expected.1.to_string());
    assert_eq!(split(syntax, &[text]), expected, "whole: {text:?}");
    for (at, _) in text.char_indices().skip(1) {
        let pieces = [&text[..at], &text[at..]];
        assert_eq!(split(syntax, &pieces), expected, "cut at {at}: {text:?}");
    }
    let characters: Vec<String> = text.chars().map(String::from).collect();
    let pieces: Vec<&str> = characters.iter().map(String::as_str).collect();
    assert_eq!(split(syntax, &pieces), expected, "by character: {text:?}");
}

#[test]
fn templates_are_recognised_by_their_closing_tag() {
    let qwen3 = "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}";
    assert_eq!(think_tags_in_template(qwen3), Some(THINK));
    let r1 = "{% set content = content.split('</think>')[-1] %}<｜Assistant｜><think>\\n";
    assert_eq!(think_tags_in_template(r1), Some(THINK));
    let magistral = "[SYSTEM_PROMPT]Think between [THINK] and [/THINK].[/SYSTEM_PROMPT]";
    assert_eq!(think_tags_in_template(magistral).unwrap().open, "[THINK]");
    let stratos = "<|begin_of_thought|> ... <|end_of_thought|> <|begin_of_solution|>";
    assert_eq!(
        think_tags_in_template(stratos).unwrap().close,
        "<|end_of_thought|>"
    );
    assert_eq!(
        think_tags_in_template("<thinking>x</thinking>")
            .unwrap()
            .open,
        "<thinking>"
    );
    let chatml =
        "{% for m in messages %}<|im_start|>{{ m.role }}\\n{{ m.content }}<|im_end|>{% endfor %}";
    assert_eq!(think_tags_in_template(chatml), None);
}

#[test]
fn a_prompt_that_ends_with_the_opening_tag_opens_thinking() {
    assert!(prompt_opens_thinking(
        "<|im_start|>assistant\n<think>\n",
        THINK
    ));
    assert!(!prompt_opens_thinking("<|im_start|>assistant\n", THINK));
    assert!(!prompt_opens_thinking(
        "assistant\n<think>\n\n</think>\n\n",
        THINK
    ));
}

#[test]
fn turning_thinking_off_closes_an_empty_block_once() {
    assert_eq!(
        close_thinking_in_prompt("assistant\n<think>\n", THINK),
        "assistant\n<think>\n\n</think>\n\n"
    );
    assert_eq!(
        close_thinking_in_prompt("assistant\n", THINK),
        "assistant\n<think>\n\n</think>\n\n"
    );
    let closed = "assistant\n<think>\n\n</think>\n\n";
    assert_eq!(close_thinking_in_prompt(closed, THINK), closed);
    assert!(!prompt_opens_thinking(
        &close_thinking_in_prompt("a<think>\n", THINK),
        THINK
    ));
}

#[test]
fn thinking_opened_by_the_prompt_ends_at_the_closing_tag() {
    let opened = syntax(THINK, true);
    assert_split_everywhere(
        &opened,
        "\nLet me count: 2 + 2 = 4.\n</think>\n\nThe answer is 4.",
        ("Let me count: 2 + 2 = 4.", "The answer is 4."),
    );
}

#[test]
fn thinking_opened_by_the_model_is_split_the_same() {
    let closed = syntax(THINK, false);
    assert_split_everywhere(
        &closed,
        " <think>\nhmm…\n\nyes</think>Four.",
        ("hmm…\n\nyes", "Four."),
    );
}

#[test]
fn output_without_a_tag_is_all_answer() {
    let closed = syntax(THINK, false);
    assert_split_everywhere(&closed, "Hello <think> there", ("", "Hello <think> there"));
    assert_split_everywhere(&closed, "<thin", ("", "<thin"));
    assert_split_everywhere(&closed, "<b>bold</b>", ("", "<b>bold</b>"));
}

#[test]
fn a_tag_mentioned_after_the_answer_began_stays_in_the_answer() {
    let opened = syntax(THINK, true);
    assert_split_everywhere(
        &opened,
        "ok</think>Use <think> and </think> tags.",
        ("ok", "Use <think> and </think> tags."),
    );
}

#[test]
fn thinking_cut_off_by_the_length_limit_is_all_reasoning() {
    let opened = syntax(THINK, true);
    assert_split_everywhere(
        &opened,
        "\nstill thinking </thi",
        ("still thinking </thi", ""),
    );
    assert_split_everywhere(&opened, "   ", ("", ""));
    assert_split_everywhere(&opened, "", ("", ""));
}

#[test]
fn empty_thinking_gives_an_empty_reasoning() {
    let opened = syntax(THINK, true);
    assert_split_everywhere(&opened, "\n\n</think>\n\nHi!", ("", "Hi!"));
}

#[test]
fn multibyte_text_and_other_tag_pairs_split_at_character_boundaries() {
    let magistral = syntax(KNOWN_THINK_TAGS[1], false);
    assert_split_everywhere(
        &magistral,
        "[THINK]日本語で考える 🤔[/THINK]答え：はい",
        ("日本語で考える 🤔", "答え：はい"),
    );
    let stratos = syntax(KNOWN_THINK_TAGS[0], false);
    assert_split_everywhere(
        &stratos,
        "<|begin_of_thought|>\n\nA < B <| C\n\n<|end_of_thought|>\n\n<|begin_of_solution|>x",
        ("A < B <| C", "<|begin_of_solution|>x"),
    );
}

#[test]
fn the_splitter_says_which_channel_the_next_text_goes_to() {
    let mut splitter = ReasoningSplitter::new(&syntax(THINK, false));
    assert!(!splitter.in_reasoning());
    splitter.push("<think>a");
    assert!(splitter.in_reasoning());
    splitter.push("</think>b");
    assert!(!splitter.in_reasoning());
}

#[test]
fn whitespace_inside_the_thinking_is_kept_between_pieces() {
    let opened = syntax(THINK, true);
    assert_eq!(
        split(
            &opened,
            &["one ", " ", "two\n", "\nthree", "\n</think>", " four"]
        ),
        ("one  two\n\nthree".to_string(), "four".to_string())
    );
}
