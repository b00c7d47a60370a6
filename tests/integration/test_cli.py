#!/usr/bin/env python3
"""End-to-end tests of the one-shot CLI: `aflorad init-demo`, `run`, `predict`.

They drive the real binary in a temporary folder: a short fine-tuning run on
the demo model with a small dataset, both adapter forms giving the same
predictions, clear errors for bad specs, and Ctrl-C then resume giving the
same adapter as an uninterrupted run."""
import json
import os
import signal
import subprocess
import tempfile
import time
import unittest

BUILD = os.environ.get("AFLORAD_BUILD", "build")
BIN = os.path.abspath(os.path.join(BUILD, "aflorad"))


def safetensors_tensors(path):
    """name -> raw bytes of every tensor (metadata such as timings left out)."""
    import struct
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    return {k: data[base + v["data_offsets"][0]:base + v["data_offsets"][1]]
            for k, v in header.items() if k != "__metadata__"}


def run(*args, cwd, timeout=600, check=True):
    p = subprocess.run([BIN, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"aflorad {' '.join(args)} exited {p.returncode}:\n{p.stderr}")
    return p


class CliTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.dir = cls.tmp.name
        run("init-demo", "models/demo", cwd=cls.dir)
        # a small slice of the demo task so runs take seconds
        with open(os.path.join(cls.dir, "models/demo/train.tsv")) as f:
            lines = f.read().splitlines()
        with open(os.path.join(cls.dir, "small.tsv"), "w") as f:
            f.write("\n".join(lines[:241]) + "\n")
        with open(os.path.join(cls.dir, "models/demo/dev.tsv")) as f:
            lines = f.read().splitlines()
        with open(os.path.join(cls.dir, "small_dev.tsv"), "w") as f:
            f.write("\n".join(lines[:101]) + "\n")

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def write_spec(self, name, spec):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            json.dump(spec, f)
        return path

    def small_spec(self, **extra):
        spec = {
            "model": "models/demo",
            "dataset": {"train": "small.tsv", "eval": "small_dev.tsv"},
            "epochs": 3,
            "batch_size": 16,
            "threads": 1,
        }
        spec.update(extra)
        return spec

    def test_run_and_predict_with_both_adapter_forms(self):
        self.write_spec("a.json", self.small_spec())
        p = run("run", "a.json", "--out", "out_a", cwd=self.dir)
        self.assertIn("freeze", p.stdout)          # projections froze and were reported
        self.assertIn("eval    epoch 3", p.stdout)
        out = os.path.join(self.dir, "out_a")
        metrics = json.load(open(os.path.join(out, "metrics.json")))
        self.assertEqual(len(metrics["epochs"]), 3)
        self.assertEqual(metrics["labels"], ["negative", "positive"])
        self.assertGreater(metrics["flops"]["backward_weight"], 0)
        self.assertFalse(os.path.exists(os.path.join(out, "checkpoint.ckpt")))
        cfg = json.load(open(os.path.join(out, "adapter/peft/adapter_config.json")))
        self.assertEqual(cfg["peft_type"], "LORA")
        self.assertEqual(cfg["r"], 4)
        self.assertEqual(cfg["lora_alpha"], 4)  # vectors folded in: scale 1

        texts = ["the movie was great and lovely", "awful boring dreadful film"]
        native, peft = [], []
        for t in texts:
            n = run("predict", "--model", "models/demo", "--adapter",
                    "out_a/adapter/adapter.safetensors", "--text", t, cwd=self.dir)
            q = run("predict", "--model", "models/demo", "--adapter", "out_a/adapter/peft",
                    "--text", t, cwd=self.dir)
            native.append(json.loads(n.stdout))
            peft.append(json.loads(q.stdout))
        for a, b in zip(native, peft):
            self.assertIn(a["label"], ("negative", "positive"))
            for x, y in zip(a["logits"], b["logits"]):
                self.assertAlmostEqual(x, y, delta=1e-4 * max(1.0, abs(x)))

        # a file of inputs gives one line each
        with open(os.path.join(self.dir, "inputs.jsonl"), "w") as f:
            for t in texts:
                f.write(json.dumps({"text": t}) + "\n")
        p = run("predict", "--model", "models/demo", "--adapter", "out_a/adapter/adapter.safetensors",
                "--input", "inputs.jsonl", cwd=self.dir)
        lines = [json.loads(l) for l in p.stdout.splitlines()]
        self.assertEqual([l["logits"] for l in lines], [n["logits"] for n in native])

    def predict(self, *args, check=True):
        return run("predict", "--model", "models/demo", *args, cwd=self.dir, check=check)

    def lines(self, p):
        return [json.loads(l) for l in p.stdout.splitlines()]

    def write_rows(self, name, rows, header=None, sep="\t"):
        with open(os.path.join(self.dir, name), "w") as f:
            if header:
                f.write(sep.join(header) + "\n")
            for r in rows:
                f.write(sep.join(r) + "\n")

    def demo_rows(self, path, n):
        """(sentence, label) pairs of one of the demo's files."""
        with open(os.path.join(self.dir, path)) as f:
            return [tuple(l.split("\t")) for l in f.read().splitlines()[1:n + 1]]

    def test_predict_reads_the_eval_file_as_trained(self):
        """predict --input scores the file one trained with: GLUE's `sentence`
        column, a header-less CoLA-style file and a sentence pair, because the
        adapter records how its training text was read (in both forms)."""
        dev = self.demo_rows("small_dev.tsv", 12)
        # GLUE-style: the adapter/ folder `run` prints, the dev file as it is
        self.write_spec("g.json", self.small_spec(epochs=1))
        run("run", "g.json", "--out", "out_g", cwd=self.dir)
        got = self.lines(self.predict("--adapter", "out_g/adapter", "--input", "small_dev.tsv"))
        self.assertEqual(len(got), 100)
        one = json.loads(self.predict("--adapter", "out_g/adapter", "--text", dev[0][0]).stdout)
        self.assertEqual(got[0]["logits"], one["logits"])
        peft = self.lines(self.predict("--adapter", "out_g/adapter/peft", "--input", "small_dev.tsv"))
        for a, b in zip(got, peft):
            self.assertEqual(a["label_id"], b["label_id"])
        # a file with other column names: --text-field
        with open(os.path.join(self.dir, "reviews.jsonl"), "w") as f:
            for s, _ in dev:
                f.write(json.dumps({"review": s}) + "\n")
        p = self.predict("--adapter", "out_g/adapter", "--input", "reviews.jsonl", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("sentence", p.stderr)          # says what it looked for
        self.assertIn("--text-field", p.stderr)      # and how to choose another
        rev = self.lines(self.predict("--adapter", "out_g/adapter", "--input", "reviews.jsonl",
                                      "--text-field", "review"))
        self.assertEqual(rev[0]["logits"], one["logits"])
        # a single-text adapter given a pair is an error
        p = self.predict("--adapter", "out_g/adapter", "--text", "a", "--text-pair", "b", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("single texts", p.stderr)
        p = self.predict("--adapter", "out_g/adapter/peft", "--input", "small_dev.tsv",
                         "--pair-field", "label", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("single texts", p.stderr)

        # CoLA-style: no header, the sentence in column 3, the label in column 1
        train = self.demo_rows("small.tsv", 240)
        self.write_rows("cola_train.tsv", [("src", l, "", s) for s, l in train])
        self.write_rows("cola_dev.tsv", [("src", l, "", s) for s, l in dev])
        self.write_spec("c.json", self.small_spec(
            epochs=1, dataset={"train": "cola_train.tsv", "text_fields": [3], "label_field": 1,
                               "has_header": False}))
        run("run", "c.json", "--out", "out_c", cwd=self.dir)
        cola = self.lines(self.predict("--adapter", "out_c/adapter/adapter.safetensors",
                                       "--input", "cola_dev.tsv"))
        self.assertEqual(len(cola), len(dev))        # the first row is data, not a header
        first = json.loads(self.predict("--adapter", "out_c/adapter", "--text", dev[0][0]).stdout)
        self.assertEqual(cola[0]["logits"], first["logits"])

        # a pair task (MRPC-like columns): pairs in, an error without the pair
        half = lambda s: (" ".join(s.split()[:3]), " ".join(s.split()[3:]) or "x")
        self.write_rows("pair_train.tsv", [(*half(s), l) for s, l in train],
                        header=("#1 String", "#2 String", "Quality"))
        self.write_rows("pair_dev.tsv", [(*half(s), l) for s, l in dev],
                        header=("#1 String", "#2 String", "Quality"))
        self.write_spec("p.json", self.small_spec(
            epochs=1, dataset={"train": "pair_train.tsv", "label_field": "Quality",
                               "text_fields": ["#1 String", "#2 String"]}))
        run("run", "p.json", "--out", "out_p", cwd=self.dir)
        for adapter in ("out_p/adapter", "out_p/adapter/peft"):
            pairs = self.lines(self.predict("--adapter", adapter, "--input", "pair_dev.tsv"))
            self.assertEqual(len(pairs), len(dev))
        a, b = half(dev[0][0])
        both = json.loads(self.predict("--adapter", "out_p/adapter", "--text", a,
                                       "--text-pair", b).stdout)
        self.assertEqual(both["logits"], pairs[0]["logits"])
        p = self.predict("--adapter", "out_p/adapter", "--text", a, check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("text pairs", p.stderr)
        self.assertIn("#2 String", p.stderr)

    def test_full_method_writes_a_usable_model_folder(self):
        """method full's adapter/model/ is a complete Hugging Face folder:
        labels in config.json, the tokenizer, safetensors weights; it works as
        predict --model (no adapter) and as the base model of another run."""
        self.write_spec("f.json", self.small_spec(epochs=1, method="full", learning_rate=1e-4))
        run("run", "f.json", "--out", "out_f", cwd=self.dir)
        folder = os.path.join(self.dir, "out_f/adapter/model")
        with open(os.path.join(folder, "config.json")) as f:
            cfg = json.load(f)
        self.assertEqual(cfg["id2label"], {"0": "negative", "1": "positive"})
        self.assertEqual(cfg["label2id"], {"negative": 0, "positive": 1})
        self.assertEqual(cfg["problem_type"], "single_label_classification")
        self.assertEqual(cfg["architectures"], ["BertForSequenceClassification"])
        for name in ("vocab.txt", "tokenizer_config.json", "model.safetensors"):
            self.assertTrue(os.path.exists(os.path.join(folder, name)), name)
        self.assertIn("classifier.weight", safetensors_tensors(os.path.join(folder, "model.safetensors")))
        t = "the movie was great and lovely"
        alone = json.loads(run("predict", "--model", "out_f/adapter/model", "--text", t,
                               cwd=self.dir).stdout)
        native = json.loads(self.predict("--adapter", "out_f/adapter/adapter.safetensors",
                                         "--text", t).stdout)
        self.assertIn(alone["label"], ("negative", "positive"))
        for x, y in zip(alone["logits"], native["logits"]):
            self.assertAlmostEqual(x, y, delta=1e-5 * max(1.0, abs(y)))
        rows = self.lines(run("predict", "--model", "out_f/adapter/model", "--input",
                              "small_dev.tsv", cwd=self.dir))
        self.assertEqual(len(rows), 100)
        # a plain base model has no head to predict with
        p = self.predict("--text", t, check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("no fine-tuned head", p.stderr)
        # and the folder is a base model for the next run
        self.write_spec("f2.json", dict(self.small_spec(epochs=1), model="out_f/adapter/model"))
        p = run("run", "f2.json", "--out", "out_f2", cwd=self.dir)
        self.assertIn("done", p.stdout)

    def test_init_adapter_takes_the_adapter_folder(self):
        """run starts from a previous run's adapter/ folder; job:<id> is the
        daemon's form and is refused here with what to give instead."""
        self.write_spec("i0.json", self.small_spec(epochs=1))
        run("run", "i0.json", "--out", "out_i0", cwd=self.dir)
        self.write_spec("i1.json", self.small_spec(epochs=1, init_adapter="out_i0/adapter"))
        self.assertIn("done", run("run", "i1.json", "--out", "out_i1", cwd=self.dir).stdout)
        self.write_spec("i2.json", self.small_spec(epochs=1, rank=8, init_adapter="out_i0/adapter"))
        p = run("run", "i2.json", "--out", "out_i2", cwd=self.dir, check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("init_adapter: the adapter has rank 4, this job 8", p.stderr)
        self.write_spec("i3.json", self.small_spec(epochs=1, init_adapter="job:0123456789abcdef"))
        p = run("run", "i3.json", "--out", "out_i3", cwd=self.dir, check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("adapter file", p.stderr)

    def test_readme_documents_every_spec_field(self):
        doc = run("spec-doc", cwd=self.dir).stdout
        readme = open(os.path.join(os.path.dirname(__file__), "../../README.md")).read()
        begin = readme.index("<!-- spec-doc:begin")
        begin = readme.index("\n", begin) + 1
        end = readme.index("<!-- spec-doc:end -->")
        self.assertEqual(readme[begin:end], doc, "README's spec table is stale: paste `aflorad spec-doc`")

    def test_bad_specs_fail_with_clear_messages(self):
        cases = [
            ({"model": "models/demo", "epochs": 0}, "epochs"),
            ({"model": "models/demo", "learning_rate": "fast"}, "learning_rate"),
            ({"model": "models/demo", "bogus": 1}, "bogus"),
            ({"model": "nope", "dataset": {"train": "small.tsv"}}, "nope"),
            (self.small_spec(dataset={"train": "missing.tsv"}), "missing.tsv"),
        ]
        for i, (spec, word) in enumerate(cases):
            self.write_spec(f"bad{i}.json", spec)
            p = run("run", f"bad{i}.json", "--out", f"bad_out{i}", cwd=self.dir, check=False)
            self.assertEqual(p.returncode, 1, p.stderr)
            self.assertIn(word, p.stderr)
        with open(os.path.join(self.dir, "broken.tsv"), "w") as f:
            f.write("sentence\tlabel\ngood film\tpositive\nbad row without label\n")
        self.write_spec("bad_rows.json", self.small_spec(dataset={"train": "broken.tsv"}))
        p = run("run", "bad_rows.json", "--out", "bad_rows_out", cwd=self.dir, check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("broken.tsv:3", p.stderr)

    def test_interrupt_then_resume_matches_uninterrupted_run(self):
        spec = self.small_spec(epochs=4, dropout=False)
        self.write_spec("r.json", spec)
        run("run", "r.json", "--out", "straight", cwd=self.dir)

        proc = subprocess.Popen([BIN, "run", "r.json", "--out", "resumed"], cwd=self.dir,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # wait for the first progress line, then Ctrl-C
        line = proc.stdout.readline()
        while line and not line.startswith("step"):
            line = proc.stdout.readline()
        self.assertTrue(line.startswith("step"), line)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=300)
        proc.stdout.close()
        proc.stderr.close()
        if proc.returncode == 0:
            self.skipTest("the run finished before the interrupt arrived")
        self.assertEqual(proc.returncode, 130, err)
        self.assertIn("checkpoint saved", err)
        self.assertTrue(os.path.exists(os.path.join(self.dir, "resumed/checkpoint.ckpt")))
        p = run("run", "r.json", "--out", "resumed", cwd=self.dir)
        self.assertIn("resumed from the checkpoint", p.stdout)
        a = safetensors_tensors(os.path.join(self.dir, "straight/adapter/adapter.safetensors"))
        b = safetensors_tensors(os.path.join(self.dir, "resumed/adapter/adapter.safetensors"))
        self.assertGreater(len(a), 10)
        self.assertEqual(a, b)  # bit for bit


if __name__ == "__main__":
    unittest.main(verbosity=2)
