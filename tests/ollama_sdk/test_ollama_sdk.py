"""The official `ollama` Python package, unmodified, against `hearth serve --ollama` on the real
SmolLM2 model.

Started by crates/hearth-cli/tests/serve_ollama.rs, which creates the virtual environment,
starts the server and passes it here through the environment:

    HEARTH_OLLAMA_HOST  http://127.0.0.1:PORT (the Ollama listener)
    HEARTH_API_KEY      the key the server was started with
    HEARTH_MODEL        the model id to ask for

Checks what an Ollama client relies on: list, show and ps; chat whole and streamed (the same
greedy text both ways), generate, `format: "json"`, embed (normalized vectors, equal for equal
texts), options, and errors raised as the package's own ResponseError with Ollama's statuses.
"""

import json
import math
import os
import unittest

import ollama

HOST = os.environ["HEARTH_OLLAMA_HOST"]
API_KEY = os.environ["HEARTH_API_KEY"]
MODEL = os.environ["HEARTH_MODEL"]
# Generous: the test machine may be busy building other things.
TIMEOUT_SECONDS = 120
GREEDY = {"temperature": 0, "num_predict": 24}


def client(api_key=API_KEY):
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return ollama.Client(host=HOST, headers=headers, timeout=TIMEOUT_SECONDS)


def ask(content):
    return [{"role": "user", "content": content}]


class Models(unittest.TestCase):
    def test_list_show_and_ps_describe_the_model(self):
        names = [model.model for model in client().list().models]
        self.assertIn(MODEL, names)
        shown = client().show(MODEL)
        self.assertEqual(shown.details.format, "gguf")
        self.assertEqual(shown.details.family, "llama")
        self.assertEqual(shown.modelinfo["general.architecture"], "llama")
        self.assertIn("completion", shown.capabilities)
        # `name:latest`, as Ollama clients write names, is the same model.
        self.assertEqual(client().show(MODEL + ":latest").details.format, "gguf")
        running = [model.model for model in client().ps().models]
        self.assertIn(MODEL, running)


class Chat(unittest.TestCase):
    def test_a_whole_answer_and_a_streamed_one_say_the_same(self):
        whole = client().chat(model=MODEL, messages=ask("What is the capital of France?"), options=GREEDY)
        self.assertTrue(whole.done)
        self.assertIn(whole.done_reason, ("stop", "length"))
        self.assertEqual(whole.message.role, "assistant")
        self.assertTrue(whole.message.content.strip())
        self.assertGreater(whole.prompt_eval_count, 0)
        self.assertGreater(whole.eval_count, 0)
        self.assertGreater(whole.total_duration, 0)
        parts = list(
            client().chat(
                model=MODEL, messages=ask("What is the capital of France?"), options=GREEDY, stream=True
            )
        )
        self.assertGreater(len(parts), 2)
        self.assertTrue(all(not part.done for part in parts[:-1]))
        self.assertTrue(parts[-1].done)
        self.assertEqual(parts[-1].eval_count, whole.eval_count)
        self.assertEqual("".join(part.message.content for part in parts), whole.message.content)

    def test_num_predict_and_stop_bound_the_answer(self):
        short = client().chat(
            model=MODEL, messages=ask("Count from one to twenty."), options={"temperature": 0, "num_predict": 3}
        )
        self.assertEqual(short.eval_count, 3)
        self.assertEqual(short.done_reason, "length")

    def test_format_json_gives_json(self):
        answer = client().chat(
            model=MODEL,
            messages=ask("Describe Paris as a JSON object."),
            format="json",
            options={"temperature": 0, "num_predict": 48},
        )
        if answer.done_reason == "stop":
            self.assertIsInstance(json.loads(answer.message.content), dict)
        else:
            self.assertTrue(answer.message.content.lstrip().startswith("{"))


class Generate(unittest.TestCase):
    def test_generate_whole_and_streamed(self):
        whole = client().generate(model=MODEL, prompt="Name a colour.", options=GREEDY)
        self.assertTrue(whole.done)
        self.assertTrue(whole.response.strip())
        streamed = "".join(
            part.response for part in client().generate(model=MODEL, prompt="Name a colour.", options=GREEDY, stream=True)
        )
        self.assertEqual(streamed, whole.response)

    def test_an_empty_prompt_loads_the_model(self):
        loaded = client().generate(model=MODEL, prompt="")
        self.assertTrue(loaded.done)
        self.assertEqual(loaded.done_reason, "load")


class Embed(unittest.TestCase):
    def test_embeddings_are_normalized_and_equal_for_equal_texts(self):
        texts = ["The cat sat on the mat.", "The cat sat on the mat.", "Bond yields rose sharply."]
        answer = client().embed(model=MODEL, input=texts)
        self.assertEqual(len(answer.embeddings), 3)
        first, again, other = answer.embeddings
        self.assertEqual(len(first), 576)
        self.assertAlmostEqual(math.sqrt(sum(x * x for x in first)), 1.0, places=4)
        self.assertEqual(first, again)
        self.assertNotEqual(first, other)
        single = client().embed(model=MODEL, input="The cat sat on the mat.")
        self.assertEqual(len(single.embeddings), 1)
        for x, y in zip(single.embeddings[0], first):
            self.assertAlmostEqual(x, y, places=5)
        legacy = client().embeddings(model=MODEL, prompt="The cat sat on the mat.")
        self.assertEqual(len(legacy.embedding), 576)


class Errors(unittest.TestCase):
    def test_an_unknown_model_is_404(self):
        with self.assertRaises(ollama.ResponseError) as caught:
            client().chat(model="no-such-model", messages=ask("hi"))
        self.assertEqual(caught.exception.status_code, 404)

    def test_bad_options_are_400_naming_the_option(self):
        with self.assertRaises(ollama.ResponseError) as caught:
            client().chat(model=MODEL, messages=ask("hi"), options={"temperature": "hot"})
        self.assertEqual(caught.exception.status_code, 400)
        self.assertIn("options.temperature", caught.exception.error)

    def test_a_missing_key_is_401(self):
        with self.assertRaises(ollama.ResponseError) as caught:
            client(api_key=None).list()
        self.assertEqual(caught.exception.status_code, 401)


if __name__ == "__main__":
    unittest.main(verbosity=2)
