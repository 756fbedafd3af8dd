"""The official `openai` Python SDK against a running `hearth serve` on the real SmolLM2 model.

Started by crates/hearth-cli/tests/serve_openai.rs, which creates the virtual environment,
starts the server and passes it here through the environment:

    HEARTH_BASE_URL   http://127.0.0.1:PORT/v1
    HEARTH_API_KEY    the key the server was started with
    HEARTH_MODEL      the model id to ask for

Checks what a client of the OpenAI API relies on: whole and streamed chat, usage, stop
sequences, seed determinism, json_schema output that parses and validates, log-probabilities,
tool calls (forced by `tool_choice`, so they hold on a small model: whole, streamed, and a
two-round tool conversation), reasoning (`reasoning_content` whole and streamed,
`reasoning_tokens`, `reasoning_effort`, on a copy of the model whose template thinks in
`<think>` tags, `HEARTH_THINKING_MODEL`), the legacy completions endpoint, models, and errors raised as
the SDK's own exception classes.
"""

import json
import os
import unittest

import jsonschema
import openai
from openai import OpenAI

BASE_URL = os.environ["HEARTH_BASE_URL"]
API_KEY = os.environ["HEARTH_API_KEY"]
MODEL = os.environ["HEARTH_MODEL"]
# A copy of the model whose chat template thinks in `<think>` tags (may be absent).
THINKING_MODEL = os.environ.get("HEARTH_THINKING_MODEL")
# Generous: the test machine may be busy building other things.
TIMEOUT_SECONDS = 120

CITY_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 24},
        "country": {"type": "string", "maxLength": 24},
        "is_capital": {"type": "boolean"},
    },
    "required": ["city", "country", "is_capital"],
    "additionalProperties": False,
}

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 24}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Get the current time in a time zone.",
        "parameters": {
            "type": "object",
            "properties": {"timezone": {"type": "string", "maxLength": 32}},
            "required": ["timezone"],
            "additionalProperties": False,
        },
    },
}
TOOLS = [WEATHER_TOOL, TIME_TOOL]
PARAMETERS = {tool["function"]["name"]: tool["function"]["parameters"] for tool in TOOLS}
NAMED_WEATHER = {"type": "function", "function": {"name": "get_weather"}}


def client(api_key=API_KEY, max_retries=2):
    return OpenAI(
        base_url=BASE_URL, api_key=api_key, timeout=TIMEOUT_SECONDS, max_retries=max_retries
    )


def ask(content, **options):
    return client().chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": content}], **options
    )


def extra(obj, name):
    """A field outside the SDK's types (Hearth's `timings`)."""
    return (obj.model_extra or {}).get(name)


class Chat(unittest.TestCase):
    def test_a_whole_answer_has_usage_and_timings(self):
        answer = ask("What is the capital of France?", temperature=0, max_tokens=24)
        self.assertEqual(answer.object, "chat.completion")
        self.assertTrue(answer.id.startswith("chatcmpl-"))
        self.assertEqual(answer.model, MODEL)
        self.assertEqual(len(answer.choices), 1)
        choice = answer.choices[0]
        self.assertEqual(choice.message.role, "assistant")
        self.assertIn("Paris", choice.message.content)
        self.assertIn(choice.finish_reason, ("stop", "length"))
        usage = answer.usage
        self.assertGreater(usage.prompt_tokens, 0)
        self.assertGreater(usage.completion_tokens, 0)
        self.assertEqual(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens)
        timings = extra(answer, "timings")
        self.assertIsNotNone(timings)
        for key in ("ttft_ms", "tpot_ms", "prompt_per_second", "predicted_per_second"):
            self.assertIn(key, timings)
        self.assertGreater(timings["ttft_ms"], 0)

    def test_a_streamed_answer_matches_the_openai_stream(self):
        options = dict(temperature=0, max_tokens=16)
        stream = ask(
            "Name three colors.", stream=True, stream_options={"include_usage": True}, **options
        )
        chunks = list(stream)
        self.assertGreater(len(chunks), 2)
        self.assertEqual(len({chunk.id for chunk in chunks}), 1, "one id for every chunk")
        self.assertTrue(all(chunk.object == "chat.completion.chunk" for chunk in chunks))
        self.assertEqual(chunks[0].choices[0].delta.role, "assistant")
        with_choices = [chunk for chunk in chunks if chunk.choices]
        text = "".join(chunk.choices[0].delta.content or "" for chunk in with_choices)
        self.assertTrue(text.strip())
        finish_reasons = [c.choices[0].finish_reason for c in with_choices if c.choices[0].finish_reason]
        self.assertEqual(len(finish_reasons), 1)
        self.assertIn(finish_reasons[0], ("stop", "length"))
        self.assertEqual(with_choices[-1].choices[0].finish_reason, finish_reasons[0])
        usage_chunk = chunks[-1]
        self.assertEqual(usage_chunk.choices, [])
        self.assertGreater(usage_chunk.usage.completion_tokens, 0)
        self.assertGreater(usage_chunk.usage.prompt_tokens, 0)

        # Without include_usage there is no usage chunk.
        plain = list(ask("Name three colors.", stream=True, **options))
        self.assertTrue(all(chunk.choices for chunk in plain))
        self.assertTrue(all(chunk.usage is None for chunk in plain))

    def test_stop_sequences_end_the_answer_and_never_appear(self):
        prompt = "Tell me about the sea."
        full = ask(prompt, temperature=0, max_tokens=40).choices[0].message.content
        words = full.split()
        self.assertGreater(len(words), 6, full)
        # A word from the middle of the greedy answer: the same request with it as a stop
        # sequence must give exactly the text before its first occurrence.
        stop_word = words[5]
        stopped = ask(prompt, temperature=0, max_tokens=40, stop=stop_word).choices[0]
        self.assertEqual(stopped.finish_reason, "stop")
        self.assertNotIn(stop_word, stopped.message.content)
        self.assertEqual(stopped.message.content, full[: full.index(stop_word)])
        listed = ask(prompt, temperature=0, max_tokens=40, stop=["no such text", words[3]])
        self.assertEqual(listed.choices[0].message.content, full[: full.index(words[3])])

    def test_a_seed_makes_sampling_repeatable(self):
        options = dict(temperature=0.9, seed=1234, max_tokens=24)
        first = ask("Write one line about the sea.", **options).choices[0].message.content
        second = ask("Write one line about the sea.", **options).choices[0].message.content
        self.assertEqual(first, second)
        self.assertTrue(first.strip())

    def test_json_schema_output_parses_and_validates(self):
        answer = ask(
            "Give the capital of France as JSON.",
            temperature=0,
            max_tokens=120,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "capital", "schema": CITY_SCHEMA, "strict": True},
            },
        )
        data = json.loads(answer.choices[0].message.content)
        jsonschema.validate(data, CITY_SCHEMA)

    def test_json_object_output_is_a_json_object(self):
        answer = ask(
            "Give a JSON object with the keys name and age for a person called Tom aged 30.",
            temperature=0,
            max_tokens=120,
            response_format={"type": "json_object"},
        )
        self.assertEqual(answer.choices[0].finish_reason, "stop")
        self.assertIsInstance(json.loads(answer.choices[0].message.content), dict)

    def test_logprobs_come_with_their_alternatives(self):
        answer = ask("Hi", temperature=0, max_tokens=4, logprobs=True, top_logprobs=2)
        content = answer.choices[0].logprobs.content
        self.assertEqual(len(content), answer.usage.completion_tokens)
        for token in content:
            self.assertLessEqual(token.logprob, 0.0)
            self.assertEqual(len(token.top_logprobs), 2)

    def test_messages_of_every_role_and_text_parts(self):
        answer = client().chat.completions.create(
            model=MODEL,
            temperature=0,
            max_completion_tokens=8,
            messages=[
                {"role": "system", "content": "You are brief."},
                {"role": "user", "content": [{"type": "text", "text": "Say hello."}]},
                {"role": "assistant", "content": "Hello."},
                {"role": "developer", "content": "Answer in English."},
                {"role": "user", "content": "Again."},
            ],
        )
        self.assertTrue(answer.choices[0].message.content.strip())
        self.assertLessEqual(answer.usage.completion_tokens, 8)


class Tools(unittest.TestCase):
    QUESTION = "What is the weather in Paris right now?"

    def assert_valid_call(self, call):
        self.assertTrue(call.id.startswith("call_"), call.id)
        self.assertEqual(call.type, "function")
        self.assertIn(call.function.name, PARAMETERS)
        arguments = json.loads(call.function.arguments)
        jsonschema.validate(arguments, PARAMETERS[call.function.name])
        return arguments

    def test_a_required_call_comes_whole_with_valid_arguments(self):
        answer = ask(self.QUESTION, tools=TOOLS, tool_choice="required", temperature=0, max_tokens=80)
        choice = answer.choices[0]
        self.assertEqual(choice.finish_reason, "tool_calls")
        self.assertIsNone(choice.message.content)
        self.assertEqual(len(choice.message.tool_calls), 1)
        self.assert_valid_call(choice.message.tool_calls[0])

    def test_a_named_call_streams_as_openai_streams_it(self):
        options = dict(tools=TOOLS, tool_choice=NAMED_WEATHER, temperature=0, max_tokens=80)
        whole = ask(self.QUESTION, **options).choices[0].message.tool_calls[0]
        chunks = list(ask(self.QUESTION, stream=True, **options))
        deltas = [chunk.choices[0].delta for chunk in chunks if chunk.choices]
        calls = [call for delta in deltas for call in (delta.tool_calls or [])]
        self.assertGreaterEqual(len(calls), 2)
        first = calls[0]
        self.assertEqual(first.index, 0)
        self.assertTrue(first.id.startswith("call_"))
        self.assertEqual(first.type, "function")
        self.assertEqual(first.function.name, "get_weather")
        self.assertEqual(first.function.arguments, "")
        for fragment in calls[1:]:
            self.assertEqual(fragment.index, 0)
            self.assertIsNone(fragment.id)
            self.assertIsNone(fragment.function.name)
        arguments = "".join(call.function.arguments for call in calls)
        self.assertEqual(json.loads(arguments), json.loads(whole.function.arguments))
        self.assertEqual(chunks[-1].choices[0].finish_reason, "tool_calls")
        self.assertFalse("".join(delta.content or "" for delta in deltas))
        # The SDK's own stream accumulator puts the same call together.
        with client().chat.completions.stream(
            model=MODEL, messages=[{"role": "user", "content": self.QUESTION}], **options
        ) as stream:
            final = stream.get_final_completion()
        self.assertEqual(final.choices[0].message.tool_calls[0].function.arguments, arguments)

    def test_a_two_round_tool_conversation(self):
        messages = [{"role": "user", "content": self.QUESTION}]
        first = client().chat.completions.create(
            model=MODEL, messages=messages, tools=TOOLS, tool_choice=NAMED_WEATHER,
            temperature=0, max_tokens=80,
        )
        message = first.choices[0].message
        call = message.tool_calls[0]
        self.assertEqual(self.assert_valid_call(call).keys(), {"city"})
        messages.append(message)
        messages.append(
            {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"sky": "sunny", "celsius": 21})}
        )
        second = client().chat.completions.create(
            model=MODEL, messages=messages, tools=TOOLS, temperature=0, max_tokens=40
        )
        choice = second.choices[0]
        # The history (the call and its result) reached the prompt.
        self.assertGreater(second.usage.prompt_tokens, first.usage.prompt_tokens)
        self.assertIn(choice.finish_reason, ("stop", "length", "tool_calls"))
        if choice.finish_reason == "tool_calls":
            for next_call in choice.message.tool_calls:
                self.assert_valid_call(next_call)
        else:
            self.assertTrue(choice.message.content.strip())
            self.assertIsNone(choice.message.tool_calls)

    def test_tool_choice_none_answers_in_words(self):
        answer = ask(self.QUESTION, tools=TOOLS, tool_choice="none", temperature=0, max_tokens=12)
        self.assertIsNone(answer.choices[0].message.tool_calls)
        self.assertTrue(answer.choices[0].message.content.strip())

    def test_invalid_tools_raise_bad_request(self):
        bad_name = {"type": "function", "function": {"name": "no spaces allowed"}}
        with self.assertRaises(openai.BadRequestError) as caught:
            ask("Hi", tools=[bad_name])
        self.assertEqual(caught.exception.param, "tools[0].function.name")
        with self.assertRaises(openai.BadRequestError) as caught:
            ask("Hi", tools=TOOLS, tool_choice={"type": "function", "function": {"name": "nope"}})
        self.assertEqual(caught.exception.param, "tool_choice.function.name")


@unittest.skipUnless(THINKING_MODEL, "no thinking model given")
class Reasoning(unittest.TestCase):
    QUESTION = [{"role": "user", "content": "What is 2+2?"}]

    def create(self, **options):
        return client().chat.completions.create(
            model=THINKING_MODEL, messages=self.QUESTION, temperature=0, max_tokens=40, **options
        )

    def test_the_thinking_comes_apart_as_reasoning_content_whole_and_streamed(self):
        answer = self.create()
        message = answer.choices[0].message
        reasoning = getattr(message, "reasoning_content", None)
        self.assertTrue(reasoning, message)
        self.assertTrue(message.content, message)
        for text in (reasoning, message.content):
            self.assertNotIn("<think>", text)
            self.assertNotIn("</think>", text)
        details = answer.usage.completion_tokens_details
        self.assertGreater(details.reasoning_tokens, 0)
        self.assertLess(details.reasoning_tokens, answer.usage.completion_tokens)

        chunks = [chunk for chunk in self.create(stream=True) if chunk.choices]
        streamed = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks)
        self.assertEqual(streamed, reasoning)
        self.assertEqual("".join(c.choices[0].delta.content or "" for c in chunks), message.content)

        # The thinking of an earlier turn may be sent back; it is not replayed to the model.
        history = self.QUESTION + [
            {"role": "assistant", "content": message.content, "reasoning_content": reasoning},
            {"role": "user", "content": "And 3+3?"},
        ]
        again = client().chat.completions.create(
            model=THINKING_MODEL, messages=history, temperature=0, max_tokens=8
        )
        self.assertEqual(again.choices[0].finish_reason, "length")

    def test_reasoning_effort_none_answers_without_thinking(self):
        message = self.create(reasoning_effort="none").choices[0].message
        self.assertIsNone(getattr(message, "reasoning_content", None))
        self.assertTrue(message.content)
        with self.assertRaises(openai.BadRequestError) as caught:
            self.create(reasoning_effort="maximal")
        self.assertEqual(caught.exception.param, "reasoning_effort")


class Completions(unittest.TestCase):
    def test_legacy_completions_whole_and_streamed(self):
        answer = client().completions.create(
            model=MODEL, prompt="Once upon a time", max_tokens=8, temperature=0
        )
        self.assertEqual(answer.object, "text_completion")
        self.assertTrue(answer.choices[0].text)
        self.assertEqual(answer.usage.completion_tokens, 8)
        self.assertEqual(answer.choices[0].finish_reason, "length")
        streamed = client().completions.create(
            model=MODEL, prompt="Once upon a time", max_tokens=8, temperature=0, stream=True
        )
        text = "".join(chunk.choices[0].text for chunk in streamed if chunk.choices)
        self.assertEqual(text, answer.choices[0].text)


class Models(unittest.TestCase):
    def test_models_are_listed_and_retrieved(self):
        ids = [model.id for model in client().models.list()]
        self.assertIn(MODEL, ids)
        model = client().models.retrieve(MODEL)
        self.assertEqual(model.id, MODEL)
        self.assertEqual(model.object, "model")


class Errors(unittest.TestCase):
    def test_invalid_fields_raise_bad_request(self):
        with self.assertRaises(openai.BadRequestError) as caught:
            ask("Hi", n=2)
        self.assertEqual(caught.exception.status_code, 400)
        self.assertEqual(caught.exception.param, "n")
        with self.assertRaises(openai.BadRequestError) as caught:
            ask("Hi", temperature=5)
        self.assertEqual(caught.exception.param, "temperature")
        with self.assertRaises(openai.BadRequestError) as caught:
            ask("Hi", response_format={"type": "xml"})
        self.assertEqual(caught.exception.param, "response_format.type")

    def test_a_prompt_too_long_is_context_length_exceeded_also_when_streaming(self):
        long_prompt = "history " * 6000
        with self.assertRaises(openai.BadRequestError) as caught:
            ask(long_prompt, max_tokens=4)
        self.assertEqual(caught.exception.code, "context_length_exceeded")
        self.assertIn("tokens", caught.exception.message)
        with self.assertRaises(openai.BadRequestError) as caught:
            ask(long_prompt, max_tokens=4, stream=True)
        self.assertEqual(caught.exception.code, "context_length_exceeded")

    def test_a_wrong_key_raises_authentication_error(self):
        with self.assertRaises(openai.AuthenticationError) as caught:
            client(api_key="sk-wrong").models.list()
        self.assertEqual(caught.exception.status_code, 401)

    def test_an_unknown_model_raises_not_found(self):
        with self.assertRaises(openai.NotFoundError) as caught:
            client().chat.completions.create(
                model="no-such-model", messages=[{"role": "user", "content": "Hi"}]
            )
        self.assertEqual(caught.exception.code, "model_not_found")
        with self.assertRaises(openai.NotFoundError):
            client().models.retrieve("no-such-model")


class Embeddings(unittest.TestCase):
    """SmolLM2 is a chat model: its embeddings are the mean of its last hidden states, enough to
    check the mechanics (shape, normalization, determinism, related texts closer)."""

    TEXTS = [
        "The cat sat on the mat.",
        "A cat was sitting on the mat.",
        "Quarterly revenue rose on strong bond sales.",
    ]

    def test_vectors_are_normalized_repeatable_and_closer_for_related_texts(self):
        # The SDK asks for base64 by default and decodes it.
        answer = client().embeddings.create(model=MODEL, input=self.TEXTS)
        self.assertEqual([item.index for item in answer.data], [0, 1, 2])
        vectors = [item.embedding for item in answer.data]
        self.assertEqual({len(vector) for vector in vectors}, {576})
        for vector in vectors:
            self.assertAlmostEqual(sum(x * x for x in vector), 1.0, places=4)
        self.assertGreater(answer.usage.prompt_tokens, 10)
        self.assertEqual(answer.usage.total_tokens, answer.usage.prompt_tokens)

        def cosine(a, b):
            return sum(x * y for x, y in zip(a, b))

        self.assertGreater(cosine(vectors[0], vectors[1]), cosine(vectors[0], vectors[2]))
        # Alone (another batch) or as floats, the same text gives the same vector.
        alone = client().embeddings.create(
            model=MODEL, input=self.TEXTS[0], encoding_format="float"
        )
        for x, y in zip(alone.data[0].embedding, vectors[0]):
            self.assertAlmostEqual(x, y, places=5)

    def test_unsupported_dimensions_and_empty_input_raise_bad_request(self):
        with self.assertRaises(openai.BadRequestError) as caught:
            client().embeddings.create(model=MODEL, input="hi", dimensions=64)
        self.assertEqual(caught.exception.param, "dimensions")
        self.assertIn("576", caught.exception.message)
        with self.assertRaises(openai.BadRequestError) as caught:
            client().embeddings.create(model=MODEL, input=[])
        self.assertEqual(caught.exception.param, "input")


if __name__ == "__main__":
    unittest.main(verbosity=2)
