#!/usr/bin/env python3
"""Integration tests of the generation endpoints of `aflorad serve`:
POST /models/{name}/generate (a base model) and POST /jobs/{id}/generate (a
finished causal-LM job's adapter), driven over HTTP with the standard
library.

A tiny random LLaMA folder with the sp_bpe tokenizer (make_tiny_llama.py)
is the base model; a LoRA causal_lm job trained on it through POST /datasets
and POST /jobs is the fine-tuned one. Checked: the two generate differently;
greedy repeats; seeded sampling repeats (and another seed differs); the
SSE token events join to the JSON reply's text and ids and end with `done`;
every malformed request gets a 400 naming its field (and its limit); a job
that did not succeed is 409, a classification job and an encoder model are
400 naming the task. With --generate-concurrency 1 --generate-queue 1 and a
slower model (a larger folder, 1024 new tokens): a third request gets 503
with Retry-After saying the queue is full and its size; a client that
disconnects frees its slot (the queued request runs long before the
abandoned one would have ended); on SIGTERM a queued request gets 503
"stopping". stories260K (../shared/data, skipped with a message when
absent), converted into a models folder: the endpoint's greedy ids from
prompt_ids equal `aflorad generate`'s (which test_generate.py checks against
PyTorch), and a text prompt is refused for want of a tokenizer."""
import http.client
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from array import array

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_tiny_llama  # noqa: E402
from test_daemon import BIN, Daemon, wait_job  # noqa: E402

STORIES = os.environ.get("AFLORAD_STORIES260K") or next(
    (p for p in (os.path.join(HERE, *[".."] * up, "shared", "data", "stories260K",
                              "stories260K.bin") for up in (3, 4)) if os.path.exists(p)),
    None)

WORDS = ["red", "blue", "cat", "dog", "sun", "sea", "tree", "moon"]


def write_slow_llama(out, hidden=256, inter=768, layers=4, max_pos=1100):
    """A LLaMA folder large enough that 1024 new tokens take seconds: the
    weights a fixed pattern (written in a blink; only the time matters)."""
    cfg = dict(make_tiny_llama.CONFIG, hidden_size=hidden, intermediate_size=inter,
               num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=4,
               max_position_embeddings=max_pos)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f)
    pattern = array("f", [((i * 7919) % 1013 - 506) / 8000.0 for i in range(4099)])
    H, I, V = hidden, inter, cfg["vocab_size"]
    shapes = [("model.embed_tokens.weight", [V, H])]
    for l in range(layers):
        p = f"model.layers.{l}."
        shapes += [(p + "input_layernorm.weight", [H]), (p + "self_attn.q_proj.weight", [H, H]),
                   (p + "self_attn.k_proj.weight", [H, H]), (p + "self_attn.v_proj.weight", [H, H]),
                   (p + "self_attn.o_proj.weight", [H, H]),
                   (p + "post_attention_layernorm.weight", [H]),
                   (p + "mlp.gate_proj.weight", [I, H]), (p + "mlp.up_proj.weight", [I, H]),
                   (p + "mlp.down_proj.weight", [H, I])]
    shapes += [("model.norm.weight", [H]), ("lm_head.weight", [V, H])]
    header, blobs, off = {}, [], 0
    for name, shape in shapes:
        n = shape[0] * (shape[1] if len(shape) > 1 else 1)
        data = array("f", [1.0]) * n if len(shape) == 1 else (pattern * (n // len(pattern) + 1))[:n]
        b = data.tobytes()
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(os.path.join(out, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(make_tiny_llama.TOKENIZER, name), os.path.join(out, name))


def sse_events(resp):
    """(event, data) pairs from an open SSE response, until it ends."""
    ev = {}
    for raw in resp:
        line = raw.decode().rstrip("\n")
        if line.startswith(":"):
            continue
        if not line:
            if "data" in ev:
                yield ev.get("event"), json.loads(ev["data"])
            ev = {}
            continue
        k, _, v = line.partition(":")
        ev[k] = v[1:] if v.startswith(" ") else v


class Stream:
    """A generation request with Accept: text/event-stream on its own
    connection, so the test decides when to read and when to leave."""

    def __init__(self, daemon, path, body):
        host, port = daemon.base[len("http://"):].split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=120)
        self.conn.request("POST", path, json.dumps(body),
                          {"Content-Type": "application/json", "Accept": "text/event-stream"})
        self.resp = self.conn.getresponse()
        self.events = sse_events(self.resp) if self.resp.status == 200 else iter(())

    def close(self):
        self.resp.close()
        self.conn.close()


class GenerateTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.dir = cls.tmp.name
        models = os.path.join(cls.dir, "models")
        subprocess.run([sys.executable, os.path.join(HERE, "make_tiny_llama.py"),
                        os.path.join(models, "tiny"), "1"], check=True)
        write_slow_llama(os.path.join(models, "slow"))
        cls.stories = None
        if STORIES:
            cls.stories = os.path.join(models, "stories")
            subprocess.run([BIN, "convert", "llama2c", STORIES, cls.stories], check=True,
                           capture_output=True)
        cls.d = Daemon(cls.dir, args=["--generate-concurrency", "1", "--generate-queue", "1",
                                      "--generate-max-tokens", "1024"]).start()
        rows = "".join(json.dumps({"prompt": f"say {w}:", "completion": " " + " ".join([w] * 3)})
                       + "\n" for w in WORDS * 6)
        st, _, ds = cls.d.request("POST", "/datasets?name=train.jsonl&task=causal_lm", rows,
                                  {"Content-Type": "application/jsonl"})
        assert st == 201, ds
        st, _, job = cls.d.request("POST", "/jobs", {
            "model": "tiny", "task": "causal_lm", "dataset": {"train": ds["id"]}, "method": "lora",
            "epochs": 3, "batch_size": 4, "learning_rate": 0.02, "max_grad_norm": 1.0,
            "threads": 1})
        assert st == 201, job
        cls.job = job["id"]
        j = wait_job(cls.d, cls.job, ("succeeded", "failed"))
        assert j["status"] == "succeeded", j

    @classmethod
    def tearDownClass(cls):
        cls.d.stop(signal.SIGKILL)
        cls.tmp.cleanup()

    def gen(self, path, body, status=200):
        st, hdr, out = self.d.request("POST", path, body)
        self.assertEqual(st, status, out)
        return out

    def test_base_and_job_differ_and_greedy_repeats(self):
        body = {"prompt": "say red:", "max_new_tokens": 8}
        base = self.gen("/models/tiny/generate", body)
        tuned = self.gen(f"/jobs/{self.job}/generate", body)
        self.assertEqual(set(base), {"text", "ids", "prompt_tokens", "completion_tokens",
                                     "finish_reason", "seconds"})
        self.assertNotEqual(base["ids"], tuned["ids"])
        again = self.gen("/models/tiny/generate", body)
        self.assertEqual((again["ids"], again["text"]), (base["ids"], base["text"]))
        again = self.gen(f"/jobs/{self.job}/generate", body)
        self.assertEqual((again["ids"], again["text"]), (tuned["ids"], tuned["text"]))
        # the same as `aflorad generate` with the model folder and the job's adapter
        adapter = os.path.join(self.dir, "jobs", self.job, "adapter")
        for r, extra in ((base, []), (tuned, ["--adapter", adapter])):
            cli = json.loads(subprocess.run(
                [BIN, "generate", "--model", os.path.join(self.dir, "models", "tiny"), "--prompt",
                 "say red:", "--max-new-tokens", "8", *extra], capture_output=True, text=True,
                check=True).stdout)
            self.assertEqual((r["ids"], r["text"]), (cli["ids"], cli["text"]))
            self.assertEqual(r["prompt_tokens"], len(cli["prompt_ids"]))
            self.assertEqual(r["completion_tokens"], len(r["ids"]))
            self.assertIn(r["finish_reason"], ("eos", "length"))
            self.assertGreaterEqual(r["seconds"], 0)

    def test_seeded_sampling_repeats(self):
        body = {"prompt_ids": [1, 17], "max_new_tokens": 20, "temperature": 1.5, "top_p": 0.95}
        a = self.gen("/models/tiny/generate", {**body, "seed": 7})
        b = self.gen("/models/tiny/generate", {**body, "seed": 7})
        c = self.gen("/models/tiny/generate", {**body, "seed": 8})
        self.assertEqual(a["ids"], b["ids"])
        self.assertNotEqual(a["ids"], c["ids"])
        self.assertEqual(a["prompt_tokens"], 2)

    def test_sse_tokens_join_to_the_json_text(self):
        for body in ({"prompt": "say cat:", "max_new_tokens": 12},
                     {"prompt_ids": [1, 300, 17], "max_new_tokens": 30, "temperature": 1.0,
                      "seed": 3}):
            path = f"/jobs/{self.job}/generate"
            want = self.gen(path, body)
            s = Stream(self.d, path, body)
            self.assertEqual(s.resp.status, 200)
            self.assertTrue(s.resp.getheader("Content-Type").startswith("text/event-stream"))
            events = list(s.events)
            s.close()
            kinds = [e for e, _ in events]
            self.assertEqual(kinds[-1], "done", events)
            self.assertEqual(set(kinds[:-1]), {"token"}, events)
            tokens = [d for e, d in events if e == "token"]
            done = events[-1][1]
            self.assertEqual("".join(t["text"] for t in tokens), done["text"])
            self.assertEqual([t["id"] for t in tokens if t["id"] is not None], done["ids"])
            self.assertEqual([t["index"] for t in tokens][:len(done["ids"])],
                             list(range(len(done["ids"]))))
            self.assertEqual((done["text"], done["ids"], done["finish_reason"]),
                             (want["text"], want["ids"], want["finish_reason"]))

    def test_each_validation_error_names_its_field(self):
        cases = [
            ({"max_new_tokens": 4}, "prompt", "required"),
            ({"prompt": "a", "prompt_ids": [1]}, "prompt_ids", "exactly one"),
            ({"prompt": 3}, "prompt", "string"),
            ({"prompt": "a", "max_new_tokens": 1025}, "max_new_tokens", "1024"),
            ({"prompt": "a", "max_new_tokens": 2.5}, "max_new_tokens", "integer"),
            ({"prompt": "a", "temperature": -1}, "temperature", "100"),
            ({"prompt": "a", "top_p": 0}, "top_p", "at most 1"),
            ({"prompt": "a", "top_p": 1.5}, "top_p", "at most 1"),
            ({"prompt": "a", "seed": -1}, "seed", "9007199254740991"),
            ({"prompt": "a", "stream": True}, "stream", "unknown field"),
            ({"prompt_ids": []}, "prompt_ids", "1 to 65536"),
            ({"prompt_ids": [1, -2]}, "prompt_ids[1]", "token id"),
            ({"prompt_ids": [1, 420]}, "prompt_ids", "vocabulary"),  # the model's 420 ids
            ({"messages": "hi"}, "messages", "array"),
            ({"messages": [{"role": "user"}]}, "messages[0].content", "string"),
            ({"messages": [{"role": "user", "content": "hi"}]}, "messages", "chat template"),
        ]
        for body, field, words in cases:
            for path in ("/models/tiny/generate", f"/jobs/{self.job}/generate"):
                with self.subTest(body=body, path=path):
                    st, _, out = self.d.request("POST", path, body)
                    self.assertEqual(st, 400, out)
                    self.assertEqual(out["error"]["field"], field, out)
                    self.assertIn(words, out["error"]["message"])
        # the same refusals before a stream starts: a 400, not an event
        s = Stream(self.d, "/models/tiny/generate", {"prompt_ids": [1, 999]})
        self.assertEqual(s.resp.status, 400)
        self.assertEqual(json.loads(s.resp.read())["error"]["field"], "prompt_ids")
        s.close()

    def test_wrong_job_or_model(self):
        st, _, out = self.d.request("POST", "/models/demo/generate", {"prompt": "a"})
        self.assertEqual(st, 400, out)
        self.assertEqual(out["error"]["field"], "task")
        self.assertIn("causal_lm", out["error"]["message"])
        st, _, out = self.d.request("POST", "/models/nothere/generate", {"prompt": "a"})
        self.assertEqual(st, 404, out)
        st, _, out = self.d.request("POST", "/jobs/0123456789abcdef/generate", {"prompt": "a"})
        self.assertEqual(st, 404, out)
        # a classification job: 400 naming the task; a cancelled one: 409
        st, _, demo = self.d.request("POST", "/jobs", {"model": "demo", "epochs": 1,
                                                       "threads": 1})
        self.assertEqual(st, 201, demo)
        j = wait_job(self.d, demo["id"], ("succeeded", "failed"))
        self.assertEqual(j["status"], "succeeded", j)
        st, _, out = self.d.request("POST", f"/jobs/{demo['id']}/generate", {"prompt": "a"})
        self.assertEqual(st, 400, out)
        self.assertEqual(out["error"]["field"], "task")
        self.assertIn("classification", out["error"]["message"])
        st, _, other = self.d.request("POST", "/jobs", {"model": "demo", "epochs": 50,
                                                        "threads": 1})
        self.d.request("POST", f"/jobs/{other['id']}/cancel")
        wait_job(self.d, other["id"], ("cancelled",))
        st, _, out = self.d.request("POST", f"/jobs/{other['id']}/generate", {"prompt": "a"})
        self.assertEqual(st, 409, out)
        self.assertIn("cancelled", out["error"]["message"])

    def slow_stream(self, daemon=None):
        """A running 1024-token generation on the slow model: its stream,
        once its first token came, and the seconds per token so far."""
        s = Stream(daemon or self.d, "/models/slow/generate",
                   {"prompt_ids": [1], "max_new_tokens": 1024})
        self.assertEqual(s.resp.status, 200, s.resp.status == 200 or s.resp.read())
        t0 = None
        for i in range(6):
            kind, _ = next(s.events)
            self.assertEqual(kind, "token")
            if i == 0:
                t0 = time.time()
        return s, (time.time() - t0) / 5

    def test_queue_full_then_a_disconnect_frees_the_slot(self):
        running, per_token = self.slow_stream()
        remaining = (1024 - 6) * per_token  # what the running one still needs
        queued = {}

        def wait_queued():
            t = time.time()
            queued["reply"] = self.d.request("POST", "/models/tiny/generate",
                                             {"prompt_ids": [1], "max_new_tokens": 1})
            queued["at"] = time.time()
            queued["waited"] = queued["at"] - t
        th = threading.Thread(target=wait_queued)
        th.start()
        time.sleep(0.5)  # in the queue (concurrency 1: the slow one runs)
        st, hdr, out = self.d.request("POST", "/models/tiny/generate", {"prompt": "a"})
        self.assertEqual(st, 503, out)
        self.assertEqual(out["error"]["code"], "queue_full")
        self.assertIn("queue is full", out["error"]["message"])
        self.assertIn("1 waiting", out["error"]["message"])
        self.assertIn("Retry-After", hdr)
        self.assertFalse("reply" in queued)
        left = time.time()
        running.close()  # the client leaves: its generation stops, the queued one runs
        th.join(timeout=remaining + 60)
        self.assertEqual(queued["reply"][0], 200, queued["reply"])
        self.assertLess(queued["at"] - left, max(0.5 * remaining, 1.5),
                        f"the abandoned generation kept the slot ({per_token:.4f} s a token)")

    def test_stop_answers_queued_requests(self):
        d = Daemon(self.dir, args=["--generate-concurrency", "1", "--generate-queue", "2",
                                       "--generate-max-tokens", "1024"])
        # a second daemon cannot share the data directory: its own copy
        d.data_dir = os.path.join(self.dir, "second")
        os.makedirs(os.path.join(d.data_dir, "models"), exist_ok=True)
        os.symlink(os.path.join(self.dir, "models", "slow"),
                   os.path.join(d.data_dir, "models", "slow"))
        d.start()
        try:
            running, _ = self.slow_stream(d)
            queued = {}
            th = threading.Thread(target=lambda: queued.setdefault(
                "reply", d.request("POST", "/models/slow/generate", {"prompt_ids": [1]})))
            th.start()
            time.sleep(0.5)
            d.proc.send_signal(signal.SIGTERM)
            th.join(timeout=60)
            st, _, out = queued["reply"]
            self.assertEqual(st, 503, out)
            self.assertEqual(out["error"]["code"], "stopping")
            self.assertIn("stopping", out["error"]["message"])
            # the running one ends with its done event, finish "stopped"
            rest = list(running.events)
            self.assertEqual(rest[-1][0], "done", rest[-3:])
            self.assertEqual(rest[-1][1]["finish_reason"], "stopped")
            running.close()
            self.assertEqual(d.proc.wait(timeout=60), 0)
        finally:
            d.stop(signal.SIGKILL)

    def test_stories260k_prompt_ids(self):
        if not self.stories:
            self.skipTest("../shared/data/stories260K/stories260K.bin is absent: "
                          "the stories260K generation case is not run")
        out = self.gen("/models/stories/generate", {"prompt_ids": [1], "max_new_tokens": 24})
        cli = subprocess.run([BIN, "generate", "--model", self.stories, "--prompt-ids", "1",
                              "--max-new-tokens", "24"], capture_output=True, text=True,
                             check=True)
        self.assertEqual(out["ids"], json.loads(cli.stdout)["ids"])
        self.assertIsNone(out["text"])  # a converted folder has no tokenizer
        st, _, err = self.d.request("POST", "/models/stories/generate", {"prompt": "Once"})
        self.assertEqual(st, 400, err)
        self.assertEqual(err["error"]["field"], "prompt")
        self.assertIn("tokenizer", err["error"]["message"])


if __name__ == "__main__":
    unittest.main()
