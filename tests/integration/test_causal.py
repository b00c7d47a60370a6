#!/usr/bin/env python3
"""End-to-end causal-LM fine-tuning: `aflorad run` with task causal_lm on a
tiny random LLaMA folder (make_tiny_llama.py: config.json, model.safetensors
in LlamaForCausalLM's names, the sp_bpe fixture tokenizer) and a small
prompt/completion JSON Lines set, with AFLoRA. Checks that the evaluation
loss falls, perplexity is exp(loss), projections freeze, the best epoch is
the lowest eval loss, that the adapter is exported (native and PEFT
CAUSAL_LM) and changes greedy generation, that bad rows fail before training with their
line number, and that chat rows train through the model's chat template (a copy of the
folder with the ChatML template of tests/chat_fixtures) and generate --messages renders
it, while a folder without a template, or with an unknown one, is refused by name. With answer_rule gsm8k on questions whose training answer is
always "#### 7", exact_match is reported per epoch, counts only the rows
with a completion, rises from the first epoch to the share of evaluation
rows whose reference answer is 7 once the model has learnt the constant,
beats what the untuned model says, and picks the best epoch when it is the
metric."""
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import unittest

BUILD = os.environ.get("AFLORAD_BUILD", "build")
BIN = os.path.abspath(os.path.join(BUILD, "aflorad"))
HERE = os.path.dirname(os.path.abspath(__file__))

WORDS = ["red", "blue", "cat", "dog", "sun", "sea", "tree", "moon"]


def rows(n, offset):
    return [{"prompt": f"say {WORDS[(i + offset) % len(WORDS)]}:",
             "completion": " " + " ".join([WORDS[(i + offset) % len(WORDS)]] * 3)}
            for i in range(n)]


def chats(n, offset):
    return [{"messages": [{"role": "user", "content": f"say {WORDS[(i + offset) % len(WORDS)]}"},
                          {"role": "assistant",
                           "content": " ".join([WORDS[(i + offset) % len(WORDS)]] * 3)}]}
            for i in range(n)]


def with_template(src, dst, template):
    """A copy of the model folder src whose tokenizer_config.json has template."""
    shutil.copytree(src, dst)
    path = os.path.join(dst, "tokenizer_config.json")
    with open(path) as f:
        config = json.load(f)
    config["chat_template"] = template
    with open(path, "w") as f:
        json.dump(config, f)


def questions(n, offset, answer):
    return [{"prompt": f"Q: how many {WORDS[(i + offset) % len(WORDS)]}s?",
             "completion": f" #### {answer}"} for i in range(n)]


def write_jsonl(path, items):
    with open(path, "w") as f:
        for r in items:
            f.write(json.dumps(r) + "\n")


def run(*args, cwd, check=True, env=None):
    p = subprocess.run([BIN, *args], cwd=cwd, capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, **(env or {})))
    if check and p.returncode != 0:
        raise AssertionError(f"aflorad {' '.join(args)} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
    return p


class CausalTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.dir = cls.tmp.name
        subprocess.run([sys.executable, os.path.join(HERE, "make_tiny_llama.py"),
                        os.path.join(cls.dir, "tiny-llama"), "1"], check=True)
        write_jsonl(os.path.join(cls.dir, "train.jsonl"), rows(48, 0))
        write_jsonl(os.path.join(cls.dir, "eval.jsonl"), rows(8, 3))
        write_jsonl(os.path.join(cls.dir, "chat_train.jsonl"), chats(48, 0))
        write_jsonl(os.path.join(cls.dir, "chat_eval.jsonl"), chats(8, 3))
        with open(os.path.join(HERE, "..", "chat_fixtures", "templates", "chatml.jinja")) as f:
            chatml = f.read()
        with_template(os.path.join(cls.dir, "tiny-llama"), os.path.join(cls.dir, "tiny-chat"),
                      chatml)
        with_template(os.path.join(cls.dir, "tiny-llama"), os.path.join(cls.dir, "tiny-odd"),
                      "{% for m in messages %}<|user|>{{ m['content'] }}{% endfor %}")
        # every training answer is 7; of the 8 judged evaluation rows 6
        # answer 7 (one written "7.0": the gsm8k rule reads it as 7) and 2
        # answer 3; the text rows have nothing to judge
        write_jsonl(os.path.join(cls.dir, "q_train.jsonl"), questions(48, 0, 7))
        cls.q_eval = (questions(5, 3, 7) + questions(1, 1, "7.0") + questions(2, 5, 3)
                      + [{"text": "seven is 7"}, {"text": "three"}])
        write_jsonl(os.path.join(cls.dir, "q_eval.jsonl"), cls.q_eval)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def spec(self, name, **extra):
        spec = {"model": os.path.join(self.dir, "tiny-llama"), "task": "causal_lm",
                "dataset": {"train": "train.jsonl", "eval": "eval.jsonl"},
                "method": "aflora", "epochs": 5, "batch_size": 4, "learning_rate": 0.02,
                "max_grad_norm": 1.0, "threads": 1}
        spec.update(extra)
        with open(os.path.join(self.dir, name), "w") as f:
            json.dump(spec, f)
        return name

    def test_bf16_folder_trains_as_its_f32_twin(self):
        # the same numbers stored bf16 and f32: the bf16 folder's frozen
        # weights stay 16-bit (mapped, widened per product), with activation
        # checkpointing on, and the run's losses are the f32 run's, bit for bit
        for name, dtype in (("tiny-bf16", "BF16"), ("tiny-f32-bf16", "F32-BF16")):
            subprocess.run([sys.executable, os.path.join(HERE, "make_tiny_llama.py"),
                            os.path.join(self.dir, name), "1", "--dtype", dtype], check=True)
        p16 = run("run", self.spec("bf16.json", model=os.path.join(self.dir, "tiny-bf16"),
                                   epochs=2, activation_checkpointing="on"),
                  "--out", "out_bf16", cwd=self.dir)
        self.assertIn("frozen weights kept 16-bit", p16.stdout)
        self.assertIn("activation checkpointing: on", p16.stdout)
        self.assertIn("frozen base 16-bit", p16.stdout)
        self.assertIn("checkpointed", p16.stdout)
        p32 = run("run", self.spec("f32.json", model=os.path.join(self.dir, "tiny-f32-bf16"),
                                   epochs=2), "--out", "out_f32", cwd=self.dir)
        self.assertNotIn("kept 16-bit", p32.stdout)
        self.assertNotIn("activation checkpointing: on", p32.stdout)  # auto: too small to pay
        metrics = []
        for out in ("out_bf16", "out_f32"):
            with open(os.path.join(self.dir, out, "metrics.json")) as f:
                metrics.append([e["metrics"]["loss"] for e in json.load(f)["epochs"]])
        self.assertEqual(metrics[0], metrics[1])
        self.assertEqual(len(metrics[0]), 2)
        # a classification spec cannot ask for it
        bad = self.spec("bad.json", activation_checkpointing="on", task="classification")
        p = run("run", bad, "--out", "out_bad", cwd=self.dir, check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("activation_checkpointing", p.stderr + p.stdout)

    def test_memory_limit_between_the_plans(self):
        # long token-id rows, so checkpointing's saving shows in the estimate;
        # a limit between the two plans: "off" is refused with the advice to
        # turn it on, "auto" turns it on and runs
        rng = random.Random(5)
        long_rows = [{"input_ids": [rng.randrange(3, 420) for _ in range(200)]}
                     for _ in range(16)]
        write_jsonl(os.path.join(self.dir, "long.jsonl"), long_rows)

        def estimate(mode, limit="64G", check=True):
            spec = self.spec(f"mem_{mode}.json", dataset={"train": "long.jsonl"}, epochs=1,
                             batch_size=16, max_seq_len=256, activation_checkpointing=mode)
            return run("run", spec, "--out", f"out_mem_{mode}", cwd=self.dir, check=check,
                       env={"AFLORAD_MEMORY_LIMIT": limit})

        def mib(p):
            line = next(l for l in p.stdout.splitlines() if "memory: estimated" in l)
            value, unit = line.split("memory: estimated ")[1].split(" ")[:2]
            return float(value) * {"KiB": 1 / 1024, "MiB": 1, "GiB": 1024}[unit[:3]]

        off, on = mib(estimate("off")), mib(estimate("on"))
        self.assertLess(on, off - 1.0)  # at least a MiB saved
        limit = f"{int((on + off) / 2 * 1024)}K"
        p = estimate("off", limit, check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn('set activation_checkpointing to "on"', p.stderr)
        p = estimate("auto", limit)
        self.assertIn("activation checkpointing: on", p.stdout)
        self.assertIn("checkpointed", p.stdout)

    def test_aflora_causal_lm_learns_and_freezes(self):
        p = run("run", self.spec("a.json"), "--out", "out_a", cwd=self.dir)
        self.assertIn("freeze", p.stdout)  # projections froze and were reported
        self.assertIn("training data: 48 rows (prompt/completion 48)", p.stdout)
        evals = [l for l in p.stdout.splitlines() if l.startswith("eval ")]
        self.assertEqual(len(evals), 5)
        with open(os.path.join(self.dir, "out_a", "metrics.json")) as f:
            metrics = json.load(f)
        losses = [e["metrics"]["loss"] for e in metrics["epochs"]]
        for e in metrics["epochs"]:
            self.assertAlmostEqual(e["metrics"]["perplexity"], math.exp(e["metrics"]["loss"]),
                                   places=3)
        # learnable rows: the loss falls well below the untrained model's
        self.assertLess(losses[-1], losses[0] - 0.5, losses)
        best = metrics["best_epoch"]
        self.assertEqual(losses[best - 1], min(losses))
        # default LLaMA targets with trainable_projections ffn: up and down of
        # 2 blocks have A and B to freeze
        freezes = [l for l in p.stdout.splitlines() if l.startswith("freeze ")]
        self.assertEqual(len(freezes), 2 * 2 * 2, freezes)
        self.assertTrue(all(("up_proj" in l or "down_proj" in l) for l in freezes), freezes)
        self.assertIn("adapter out_a/adapter/", p.stdout)
        adapter = os.path.join(self.dir, "out_a", "adapter")
        with open(os.path.join(adapter, "peft", "adapter_config.json")) as f:
            config = json.load(f)
        self.assertEqual(config["task_type"], "CAUSAL_LM")
        self.assertEqual(sorted(config["target_modules"]),
                         ["down_proj", "k_proj", "q_proj", "up_proj", "v_proj"])
        # the exported adapter changes what the model says, and its three
        # forms (the run's folder, the native file, the PEFT fold) agree
        def greedy(*extra):
            out = run("generate", "--model", os.path.join(self.dir, "tiny-llama"), "--prompt",
                      "say red:", "--max-new-tokens", "8", *extra, cwd=self.dir)
            return json.loads(out.stdout)["ids"]
        base = greedy()
        tuned = [greedy("--adapter", a) for a in
                 (adapter, os.path.join(adapter, "adapter.safetensors"),
                  os.path.join(adapter, "peft"))]
        self.assertNotEqual(tuned[0], base)
        self.assertEqual(tuned[0], tuned[1])
        self.assertEqual(tuned[0], tuned[2])

    def test_gsm8k_exact_match(self):
        spec = self.spec("q.json", method="lora",
                         dataset={"train": "q_train.jsonl", "eval": "q_eval.jsonl"},
                         answer_rule="gsm8k", eval_max_new_tokens=8, metric="exact_match")
        p = run("run", spec, "--out", "out_q", cwd=self.dir)
        self.assertIn("evaluation data: 10 rows", p.stdout)
        self.assertIn("8 with a completion to judge", p.stdout)
        evals = [l for l in p.stdout.splitlines() if l.startswith("eval ")]
        self.assertEqual(len(evals), 5)
        self.assertTrue(all("exact_match" in l and "of 8)" in l for l in evals), evals)
        with open(os.path.join(self.dir, "out_q", "metrics.json")) as f:
            metrics = json.load(f)
        ems = []
        for e in metrics["epochs"]:
            m = e["metrics"]
            self.assertEqual(m["n"], 10)
            self.assertEqual(m["exact_match_rows"], 8)
            self.assertGreaterEqual(m["exact_match"], 0.0)
            self.assertLessEqual(m["exact_match"], 1.0)
            hits = m["exact_match"] * 8
            self.assertAlmostEqual(hits, round(hits), places=9)  # a count of rows
            ems.append(m["exact_match"])
        # the constant is learnt: every 7-row right, the two 3-rows wrong
        self.assertLess(ems[0], ems[-1], ems)
        self.assertEqual(ems[-1], 6 / 8, ems)
        # the untuned model answers 7 on fewer rows: it never even says "7"
        said_seven = 0
        for row in self.q_eval[:8]:
            out = run("generate", "--model", os.path.join(self.dir, "tiny-llama"), "--prompt",
                      row["prompt"], "--max-new-tokens", "8", cwd=self.dir)
            said_seven += "7" in json.loads(out.stdout)["text"]
        self.assertLess(said_seven, ems[-1] * 8)
        # the best epoch is the first with the highest exact_match
        self.assertEqual(metrics["best_epoch"], ems.index(max(ems)) + 1)
        self.assertEqual(metrics["best"]["exact_match"], max(ems))

    def test_answer_rule_needs_rows_to_judge(self):
        spec = self.spec("t.json", dataset={"train": "q_train.jsonl", "eval": "train_text.jsonl"},
                         answer_rule="exact")
        write_jsonl(os.path.join(self.dir, "train_text.jsonl"), [{"text": "only text"}])
        p = run("run", spec, "--out", "out_t", cwd=self.dir, check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("answer_rule: the evaluation data has no row with a completion to judge",
                      p.stderr + p.stdout)
        self.assertNotIn("step ", p.stdout)

    def test_bad_rows_fail_before_training_with_their_line(self):
        bad = rows(3, 0) + [{"prompt": "p"}]
        write_jsonl(os.path.join(self.dir, "bad.jsonl"), bad)
        p = run("run", self.spec("b.json", dataset={"train": "bad.jsonl"}), "--out", "out_b",
                cwd=self.dir, check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("bad.jsonl: line 4: \"completion\" is missing", p.stderr + p.stdout)
        self.assertNotIn("step ", p.stdout)

    def test_chat_rows_train_with_the_chat_template(self):
        p = run("run", self.spec("c.json", model=os.path.join(self.dir, "tiny-chat"),
                                 dataset={"train": "chat_train.jsonl", "eval": "chat_eval.jsonl"}),
                "--out", "out_c", cwd=self.dir)
        self.assertIn("training data: 48 rows (chat 48)", p.stdout)
        with open(os.path.join(self.dir, "out_c", "metrics.json")) as f:
            losses = [e["metrics"]["loss"] for e in json.load(f)["epochs"]]
        self.assertLess(losses[-1], losses[0] - 0.5, losses)
        # generate --messages: the ChatML prompt with the assistant's header,
        # no BOS (ChatML writes none): --prompt's ids of that text after its BOS
        with open(os.path.join(self.dir, "conv.json"), "w") as f:
            json.dump({"messages": [{"role": "user", "content": "say red"}]}, f)

        def gen(*extra):
            out = run("generate", "--model", os.path.join(self.dir, "tiny-chat"),
                      "--max-new-tokens", "6", "--adapter", os.path.join("out_c", "adapter"),
                      *extra, cwd=self.dir)
            return json.loads(out.stdout)
        chat = gen("--messages", "conv.json")
        text = gen("--prompt", "<|im_start|>user\nsay red<|im_end|>\n<|im_start|>assistant\n")
        self.assertEqual(chat["prompt_ids"], text["prompt_ids"][1:])
        # <|im_end|> is no single token of this tokenizer: generation stops at its EOS
        self.assertEqual(chat["eos_id"], 2)
        self.assertTrue(chat["ids"])

    def test_chat_rows_need_a_known_template(self):
        write_jsonl(os.path.join(self.dir, "chat1.jsonl"), chats(2, 0))
        for model, want in (("tiny-llama", "line 1: chat rows need the model's chat template"),
                            ("tiny-odd", "line 1: unknown chat template \"{% for m in messages")):
            p = run("run", self.spec("d.json", model=os.path.join(self.dir, model),
                                     dataset={"train": "chat1.jsonl"}),
                    "--out", "out_d", cwd=self.dir, check=False)
            self.assertNotEqual(p.returncode, 0)
            self.assertIn(want, p.stderr + p.stdout)
            self.assertNotIn("step ", p.stdout)
        p = run("generate", "--model", os.path.join(self.dir, "tiny-odd"), "--messages",
                "missing.json", cwd=self.dir, check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("unknown chat template", p.stderr)

if __name__ == "__main__":
    unittest.main()
