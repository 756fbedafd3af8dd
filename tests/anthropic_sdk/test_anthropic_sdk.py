"""The official `anthropic` Python SDK against a running `hearth serve` on the real SmolLM2 model.

Started by crates/hearth-cli/tests/serve_openai.rs (after the openai suite, against the same
server), which passes the server through the environment:

    HEARTH_ANTHROPIC_BASE_URL   http://127.0.0.1:PORT (the SDK adds /v1/messages)
    HEARTH_API_KEY              the key the server was started with (sent as x-api-key)
    HEARTH_MODEL                the model id to ask for

Checks the Messages API as the SDK uses it: whole and streamed messages (the SDK's own stream
accumulator checks the events' order), stop reasons, usage, system prompts, tool use forced by
`tool_choice` (so it holds on a small model) in a two-round conversation with a tool_result,
and errors raised as the SDK's own exception classes.
"""

import json
import os
import unittest

import anthropic
import jsonschema
from anthropic import Anthropic

BASE_URL = os.environ["HEARTH_ANTHROPIC_BASE_URL"]
API_KEY = os.environ["HEARTH_API_KEY"]
MODEL = os.environ["HEARTH_MODEL"]
TIMEOUT_SECONDS = 120
# This SDK's `create` no longer takes sampling parameters; Hearth still reads Anthropic's
# `temperature`, so greedy decoding (deterministic answers) is asked for in the body.
GREEDY = {"temperature": 0}

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Get the current weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 24}},
        "required": ["city"],
        "additionalProperties": False,
    },
}
QUESTION = "What is the weather in Paris right now?"


def client(api_key=API_KEY):
    return Anthropic(base_url=BASE_URL, api_key=api_key, timeout=TIMEOUT_SECONDS, max_retries=2)


def create(content, **options):
    options.setdefault("max_tokens", 24)
    options.setdefault("extra_body", GREEDY)
    return client().messages.create(
        model=MODEL, messages=[{"role": "user", "content": content}], **options
    )


class Messages(unittest.TestCase):
    def test_a_whole_message(self):
        message = create("What is the capital of France?", system="You are a helpful assistant.")
        self.assertEqual(message.type, "message")
        self.assertEqual(message.role, "assistant")
        self.assertTrue(message.id.startswith("msg_"))
        self.assertEqual(message.model, MODEL)
        self.assertEqual(message.content[0].type, "text")
        self.assertIn("Paris", message.content[0].text)
        self.assertIn(message.stop_reason, ("end_turn", "max_tokens"))
        self.assertGreater(message.usage.input_tokens, 0)
        self.assertGreater(message.usage.output_tokens, 0)

    def test_max_tokens_and_stop_sequences_are_the_stop_reason(self):
        cut = create("Tell me about the sea.", max_tokens=5)
        self.assertEqual(cut.stop_reason, "max_tokens")
        self.assertEqual(cut.usage.output_tokens, 5)
        full = create("Tell me about the sea.", max_tokens=40).content[0].text
        stop_word = full.split()[4]
        stopped = create("Tell me about the sea.", max_tokens=40, stop_sequences=[stop_word])
        self.assertEqual(stopped.stop_reason, "stop_sequence")
        self.assertEqual(stopped.stop_sequence, stop_word)
        self.assertEqual(stopped.content[0].text, full[: full.index(stop_word)])

    def test_a_streamed_message_matches_the_whole_one(self):
        whole = create("Name three colors.", max_tokens=16)
        with client().messages.stream(
            model=MODEL,
            max_tokens=16,
            extra_body=GREEDY,
            messages=[{"role": "user", "content": "Name three colors."}],
        ) as stream:
            events = [event.type for event in stream]
            final = stream.get_final_message()
        self.assertEqual(events[0], "message_start")
        self.assertEqual(events[1], "content_block_start")
        self.assertIn("content_block_delta", events)
        self.assertEqual(events[-3:], ["content_block_stop", "message_delta", "message_stop"])
        self.assertEqual(final.content[0].text, whole.content[0].text)
        self.assertEqual(final.stop_reason, whole.stop_reason)
        self.assertEqual(final.usage.output_tokens, whole.usage.output_tokens)


class ToolUse(unittest.TestCase):
    def test_a_forced_tool_use_then_its_result(self):
        first = create(
            QUESTION,
            max_tokens=80,
            tools=[WEATHER_TOOL],
            tool_choice={"type": "tool", "name": "get_weather"},
        )
        self.assertEqual(first.stop_reason, "tool_use")
        uses = [block for block in first.content if block.type == "tool_use"]
        self.assertEqual(len(uses), 1)
        use = uses[0]
        self.assertEqual(use.name, "get_weather")
        jsonschema.validate(use.input, WEATHER_TOOL["input_schema"])
        second = client().messages.create(
            model=MODEL,
            max_tokens=40,
            extra_body=GREEDY,
            tools=[WEATHER_TOOL],
            messages=[
                {"role": "user", "content": QUESTION},
                {"role": "assistant", "content": first.content},
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": use.id, "content": "sunny, 21 C"}
                    ],
                },
            ],
        )
        self.assertGreater(second.usage.input_tokens, first.usage.input_tokens)
        self.assertIn(second.stop_reason, ("end_turn", "max_tokens", "tool_use"))
        self.assertTrue(second.content)

    def test_a_streamed_tool_use(self):
        options = dict(
            model=MODEL,
            max_tokens=80,
            extra_body=GREEDY,
            tools=[WEATHER_TOOL],
            tool_choice={"type": "any"},
            messages=[{"role": "user", "content": QUESTION}],
        )
        whole = client().messages.create(**options)
        with client().messages.stream(**options) as stream:
            events = list(stream)
            final = stream.get_final_message()
        self.assertEqual(final.stop_reason, "tool_use")
        self.assertEqual(final.content[0].type, "tool_use")
        self.assertEqual(final.content[0].input, whole.content[0].input)
        jsonschema.validate(final.content[0].input, WEATHER_TOOL["input_schema"])
        partial = "".join(
            event.delta.partial_json
            for event in events
            if event.type == "content_block_delta" and event.delta.type == "input_json_delta"
        )
        self.assertEqual(json.loads(partial), whole.content[0].input)


class Errors(unittest.TestCase):
    def test_errors_raise_the_sdks_exceptions(self):
        with self.assertRaises(anthropic.BadRequestError) as caught:
            create("Hi", extra_body={"temperature": 3})
        self.assertEqual(caught.exception.status_code, 400)
        self.assertEqual(caught.exception.body["type"], "error")
        self.assertEqual(caught.exception.body["error"]["type"], "invalid_request_error")
        with self.assertRaises(anthropic.AuthenticationError):
            client(api_key="sk-wrong").messages.create(
                model=MODEL, max_tokens=4, messages=[{"role": "user", "content": "Hi"}]
            )
        with self.assertRaises(anthropic.NotFoundError):
            client().messages.create(
                model="no-such-model", max_tokens=4, messages=[{"role": "user", "content": "Hi"}]
            )


if __name__ == "__main__":
    unittest.main(verbosity=2)
