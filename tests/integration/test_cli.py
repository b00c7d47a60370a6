#!/usr/bin/env python3
"""End-to-end tests of the one-shot CLI: `aflorad init-demo`, `run`, `predict`,
and --help / --version of every subcommand.

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


def run(*args, cwd, timeout=600, check=True, env=None):
    """env: variables to set over os.environ (None removes one)."""
    full = dict(os.environ)
    for k, v in (env or {}).items():
        if v is None:
            full.pop(k, None)
        else:
            full[k] = v
    p = subprocess.run([BIN, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                       env=full)
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
        # one convention, counted from 1: metrics.json, the console and the
        # eval lines agree on which epoch was best
        self.assertEqual([e["epoch"] for e in metrics["epochs"]], [1, 2, 3])
        best = metrics["best_epoch"]
        self.assertIn(best, (1, 2, 3))
        self.assertIn(f"best epoch {best};", p.stdout)
        self.assertEqual(metrics["best"], metrics["epochs"][best - 1]["metrics"])
        first_step = next(l for l in p.stdout.splitlines() if l.startswith("step "))
        self.assertIn("epoch 1 ", first_step)
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
            self.assertEqual(a["label"], b["label"])   # the PEFT folder names its classes too
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
        pairs = self.lines(self.predict("--adapter", "out_p/adapter", "--input", "pair_dev.tsv"))
        self.assertEqual(len(pairs), len(dev))
        # The PEFT folder carries s_d and s_b folded into A and B, so its
        # logits may differ from the native adapter's in the last bits only.
        peft = self.lines(self.predict("--adapter", "out_p/adapter/peft", "--input", "pair_dev.tsv"))
        self.assertEqual(len(peft), len(dev))
        for x, y in zip(pairs, peft):
            self.assertEqual(x["label_id"], y["label_id"])
            for u, v in zip(x["logits"], y["logits"]):
                self.assertAlmostEqual(u, v, delta=1e-5)
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

    def test_spec_doc_json_is_the_schema_with_its_defaults(self):
        schema = json.loads(run("spec-doc", "--json", cwd=self.dir).stdout)
        props = schema["properties"]
        self.assertEqual(props["batch_size"]["default"], 32)
        self.assertEqual(props["rank"]["x-default-by"], {"method": {"aflora": 4, "elora": 1024, "lora": 8}})
        self.assertEqual(props["metric"]["x-default-by"]["task"]["regression"], "pearson")
        self.assertEqual(props["dataset"]["properties"]["label_field"]["default"], "label")
        self.assertIn("init_adapter", props)
        # the presets' values, for the dashboard's form (presets.c's table)
        stsb = props["preset"]["x-presets"]["glue/stsb"]
        self.assertEqual((stsb["fields"]["task"], stsb["fields"]["epochs"]), ("regression", 20))
        self.assertEqual(stsb["field_methods"], {"learning_rate": ["aflora"], "head_learning_rate": ["aflora"]})
        self.assertEqual(len(props["preset"]["enum"]), 8)

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

    def load_json(self, name):
        with open(os.path.join(self.dir, name)) as f:
            return json.load(f)

    def write_relabelled(self, name, source, mapping, first=None, rows=None):
        """source (a demo TSV) with its labels mapped; first: the label the
        first data row must have (rows are rotated until it does)."""
        with open(os.path.join(self.dir, source)) as f:
            header, *body = f.read().splitlines()
        body = [line.rsplit("\t", 1) for line in body[:rows]]
        body = [(text, mapping[label]) for text, label in body]
        if first is not None:
            k = next(i for i, (_, label) in enumerate(body) if label == first)
            body = body[k:] + body[:k]
        with open(os.path.join(self.dir, name), "w") as f:
            f.write(header + "\n" + "".join(f"{t}\t{l}\n" for t, l in body))

    def test_memory_estimate_is_logged_and_a_job_that_cannot_fit_is_refused(self):
        spec = self.small_spec(epochs=1, max_seq_len=64)
        self.write_spec("mem.json", spec)
        # fits: the estimate is logged, with its parts and the limit it was checked against
        p = run("run", "mem.json", "--out", "mem_ok", cwd=self.dir,
                env={"AFLORAD_MEMORY_LIMIT": "64G"})
        line = next(l for l in p.stdout.splitlines() if "memory: estimated" in l)
        for part in ("weights", "activations", "(batch 16 x", "optimizer",
                     "AFLORAD_MEMORY_LIMIT 64.00 GiB"):
            self.assertIn(part, line)
        # cannot fit: refused before the model loads, naming the estimate, the
        # limit and what to lower; no adapter is written
        p = run("run", "mem.json", "--out", "mem_no", cwd=self.dir, check=False,
                env={"AFLORAD_MEMORY_LIMIT": "1M"})
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("memory: this job needs an estimated", p.stderr)
        self.assertIn("AFLORAD_MEMORY_LIMIT is 1.0 MiB", p.stderr)
        self.assertIn("batch_size 16", p.stderr)
        self.assertIn("max_seq_len 64", p.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.dir, "mem_no/adapter")))
        # the estimate shrinks with the batch: what the message tells users to lower
        def estimate(out, batch):
            self.write_spec(f"{out}.json", dict(spec, batch_size=batch))
            p = run("run", f"{out}.json", "--out", out, cwd=self.dir, check=False,
                    env={"AFLORAD_MEMORY_LIMIT": "1K"})
            return p.stderr.split("needs an estimated ")[1].split(" (")[0]
        big, small = estimate("mem_b16", 16), estimate("mem_b2", 2)
        unit = {"B": 1 / 2**20, "KiB": 1 / 1024, "MiB": 1, "GiB": 1024}
        to_mib = lambda s: float(s.split()[0]) * unit[s.split()[1]]  # noqa: E731
        self.assertLess(to_mib(small), to_mib(big))
        # a malformed limit is an error naming the variable
        p = run("run", "mem.json", "--out", "mem_bad", cwd=self.dir, check=False,
                env={"AFLORAD_MEMORY_LIMIT": "lots"})
        self.assertEqual(p.returncode, 1)
        self.assertIn("AFLORAD_MEMORY_LIMIT", p.stderr)

    def test_label_problems_fail_before_training(self):
        # each fails while loading the data: no training step, no adapter
        self.write_relabelled("ints.tsv", "small.tsv", {"negative": "0", "positive": "1"})
        self.write_relabelled("ints_dev.tsv", "small_dev.tsv", {"negative": "0", "positive": "2"})
        self.write_relabelled("three.tsv", "small.tsv", {"negative": "0", "positive": "1"})
        with open(os.path.join(self.dir, "three.tsv"), "a") as f:
            f.write("a third kind of row\t2\n")
        with open(os.path.join(self.dir, "scores.tsv"), "w") as f:
            f.write("sentence\tlabel\n" + "".join(f"row {i}\t{i * 0.017:.3f}\n" for i in range(287)))
        cases = [
            # string labels cannot name a third class
            (self.small_spec(num_labels=3), "num_labels is 3 but the data has 2 distinct labels"),
            (self.small_spec(dataset={"train": "scores.tsv"}), "did you mean task regression?"),
            (self.small_spec(dataset={"train": "three.tsv"}, metric="f1"),
             "metric: f1 scores class 1 against the rest and needs a binary task, but the training data "
             "has 3 labels (0, 1, 2)"),
            # an evaluation label the training data lacks, named by file and line
            (self.small_spec(dataset={"train": "ints.tsv", "eval": "ints_dev.tsv"}),
             "is not one of the training data's labels (0, 1)"),
        ]
        for i, (spec, want) in enumerate(cases):
            self.write_spec(f"lab{i}.json", spec)
            p = run("run", f"lab{i}.json", "--out", f"lab_out{i}", cwd=self.dir, check=False)
            self.assertEqual(p.returncode, 1, p.stderr)
            self.assertIn(want, p.stderr)
            self.assertNotIn("step", p.stdout)
            self.assertFalse(os.path.exists(os.path.join(self.dir, f"lab_out{i}/adapter")))
        p = run("run", "lab3.json", "--out", "lab_out3", cwd=self.dir, check=False)
        with open(os.path.join(self.dir, "ints_dev.tsv")) as f:
            line = next(n for n, l in enumerate(f, 1) if l.rstrip("\n").endswith("\t2"))
        self.assertIn(f"ints_dev.tsv:{line}: label '2'", p.stderr)

    def test_num_labels_beyond_integer_labels(self):
        # integer labels 0 and 1 with num_labels 3: class 2 exists, unseen
        self.write_relabelled("ints3.tsv", "small.tsv", {"negative": "0", "positive": "1"}, rows=60)
        self.write_spec("n3.json", self.small_spec(dataset={"train": "ints3.tsv"}, num_labels=3, epochs=1))
        run("run", "n3.json", "--out", "n3", cwd=self.dir)
        metrics = self.load_json("n3/metrics.json")
        self.assertEqual(metrics["labels"], ["0", "1", "2"])
        cfg = self.load_json("n3/adapter/peft/config.json")
        self.assertEqual(cfg["num_labels"], 3)
        self.assertEqual(cfg["id2label"], {"0": "0", "1": "1", "2": "2"})

    def test_full_model_config_names_labels(self):
        self.write_spec("full.json", self.small_spec(method="full", learning_rate=2e-5, epochs=1))
        run("run", "full.json", "--out", "full", cwd=self.dir)
        cfg = self.load_json("full/adapter/model/config.json")
        self.assertEqual(cfg["id2label"], {"0": "negative", "1": "positive"})
        self.assertEqual(cfg["label2id"], {"negative": 0, "positive": 1})
        self.assertFalse(os.path.exists(os.path.join(self.dir, "full/adapter/peft")))

    def test_integer_labels_keep_their_ids_in_both_adapter_forms(self):
        # GLUE-style 0/1 labels whose first row is 1: id = the integer, and
        # the PEFT folder predicts the same names as the native file
        self.write_relabelled("glue.tsv", "small.tsv", {"negative": "0", "positive": "1"}, first="1")
        self.write_relabelled("glue_dev.tsv", "small_dev.tsv", {"negative": "0", "positive": "1"}, first="0")
        self.write_spec("g.json", self.small_spec(dataset={"train": "glue.tsv", "eval": "glue_dev.tsv"},
                                                  metric="f1"))
        run("run", "g.json", "--out", "g", cwd=self.dir)
        metrics = self.load_json("g/metrics.json")
        self.assertEqual(metrics["labels"], ["0", "1"])
        cfg = self.load_json("g/adapter/peft/config.json")
        self.assertEqual(cfg["id2label"], {"0": "0", "1": "1"})
        self.assertEqual(cfg["label2id"], {"0": 0, "1": 1})
        self.assertEqual(cfg["num_labels"], 2)
        self.assertEqual(cfg["problem_type"], "single_label_classification")
        self.assertEqual(cfg["model_type"], "bert")   # a whole config: AutoConfig can read it

        # the positive class of f1 is label 1: recompute it from native predictions
        with open(os.path.join(self.dir, "glue_dev.tsv")) as f:
            rows = [line.rsplit("\t", 1) for line in f.read().splitlines()[1:]]
        with open(os.path.join(self.dir, "glue_dev.jsonl"), "w") as f:
            for text, _ in rows:
                f.write(json.dumps({"text": text}) + "\n")
        native = [json.loads(l) for l in run("predict", "--model", "models/demo", "--adapter",
                                             "g/adapter/adapter.safetensors", "--input", "glue_dev.jsonl",
                                             cwd=self.dir).stdout.splitlines()]
        peft = [json.loads(l) for l in run("predict", "--model", "models/demo", "--adapter", "g/adapter/peft",
                                           "--input", "glue_dev.jsonl", cwd=self.dir).stdout.splitlines()]
        self.assertEqual(len(native), len(rows))
        self.assertEqual([p["label"] for p in native], [p["label"] for p in peft])
        self.assertEqual([p["label_id"] for p in native], [p["label_id"] for p in peft])
        for p in native:
            self.assertEqual(p["label"], str(p["label_id"]))
        tp = sum(p["label"] == "1" and gold == "1" for p, (_, gold) in zip(native, rows))
        fp = sum(p["label"] == "1" and gold == "0" for p, (_, gold) in zip(native, rows))
        fn = sum(p["label"] == "0" and gold == "1" for p, (_, gold) in zip(native, rows))
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
        self.assertAlmostEqual(metrics["best"]["f1"], f1, places=6)

    def test_peft_base_model_name(self):
        # a model folder saved by transformers records where it came from:
        # that name goes into the PEFT folder, not the name this run used
        import shutil
        named = os.path.join(self.dir, "models/named")
        if not os.path.exists(named):
            shutil.copytree(os.path.join(self.dir, "models/demo"), named)
            path = os.path.join(named, "config.json")
            with open(path) as f:
                cfg = json.load(f)
            cfg["_name_or_path"] = "google-bert/bert-base-uncased"
            with open(path, "w") as f:
                json.dump(cfg, f)
        for model, want, how in (("models/named", "google-bert/bert-base-uncased", "the `_name_or_path`"),
                                 ("models/demo", "models/demo", "only that daemon resolves it")):
            out = model.replace("/", "_")
            self.write_spec(f"{out}.json", self.small_spec(model=model, epochs=1))
            run("run", f"{out}.json", "--out", out, cwd=self.dir)
            with open(os.path.join(self.dir, out, "adapter/peft/adapter_config.json")) as f:
                self.assertEqual(json.load(f)["base_model_name_or_path"], want)
            with open(os.path.join(self.dir, out, "adapter/peft/README.md")) as f:
                readme = f.read()
            self.assertIn(f'adapter_config.json is "{want}": ', readme)
            self.assertIn(how, readme)

    def interrupted_run(self, spec_name, out):
        """Start `run`, Ctrl-C at its first progress line: a checkpoint in out."""
        proc = subprocess.Popen([BIN, "run", spec_name, "--out", out], cwd=self.dir,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = proc.stdout.readline()
        while line and not line.startswith("step"):
            line = proc.stdout.readline()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=300)
        proc.stdout.close()
        proc.stderr.close()
        self.assertEqual(proc.returncode, 130, err)
        self.assertTrue(os.path.exists(os.path.join(self.dir, out, "checkpoint.ckpt")))

    def test_rerun_with_another_spec_is_refused(self):
        # long enough that the first step line comes well before the end
        self.write_spec("c.json", self.small_spec(epochs=40))
        self.interrupted_run("c.json", "changed")
        # another learning rate: refused, naming it, nothing trained
        self.write_spec("c_lr.json", self.small_spec(epochs=40, learning_rate=0.02))
        p = run("run", "c_lr.json", "--out", "changed", cwd=self.dir, check=False)
        self.assertEqual(p.returncode, 1, p.stdout)
        self.assertIn("learning_rate: checkpoint 0.01, spec 0.02", p.stderr)
        self.assertIn("--restart", p.stderr)
        self.assertNotIn("step", p.stdout)
        # other data under the same spec shape: refused, naming the dataset
        with open(os.path.join(self.dir, "small.tsv")) as f:
            rows = f.read().splitlines()
        with open(os.path.join(self.dir, "fewer.tsv"), "w") as f:
            f.write("\n".join(rows[:200]) + "\n")
        self.write_spec("c_data.json", self.small_spec(
            epochs=40, dataset={"train": "fewer.tsv", "eval": "small_dev.tsv"}))
        p = run("run", "c_data.json", "--out", "changed", cwd=self.dir, check=False)
        self.assertEqual(p.returncode, 1, p.stdout)
        self.assertIn("dataset.train: the data differs", p.stderr)
        # --restart discards the checkpoint and starts from step 1
        self.write_spec("c_short.json", self.small_spec(epochs=2, learning_rate=0.02))
        p = run("run", "c_short.json", "--out", "changed", "--restart", cwd=self.dir)
        self.assertIn("discarded the checkpoint", p.stdout)
        self.assertNotIn("resumed", p.stdout)
        self.assertIn("step 1/", p.stdout)

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


# Every subcommand, with arguments that would make it do real work (or fail)
# if --help were not honoured wherever it appears.
SUBCOMMANDS = {
    "serve": ["--listen", "127.0.0.1:0", "--data-dir", "d"],
    "run": ["spec.json", "--out", "o"],
    "predict": ["--model", "demo", "--text", "x"],
    "init-demo": [],
    "demo": ["--epochs"],
    "spec-doc": [],
    "version": [],
    "help": [],
}


class HelpAndVersionTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def test_every_subcommand_prints_its_usage_for_help(self):
        for cmd, args in SUBCOMMANDS.items():
            for argv in ([cmd, "--help"], [cmd, "-h"], [cmd, *args, "--help"]):
                with self.subTest(argv=argv):
                    p = run(*argv, cwd=self.dir, timeout=60, check=False)
                    self.assertEqual(p.returncode, 0, p.stderr)
                    want = "usage: aflorad " + ("<command>" if cmd == "help" else cmd)
                    self.assertTrue(p.stdout.startswith(want), p.stdout[:200])
                    self.assertEqual(p.stderr, "")
                    # nothing was done: no folder named --help, no data dir, no output
                    self.assertEqual(os.listdir(self.dir), [])

    def test_help_command_and_top_level_help(self):
        for argv in (["help"], ["--help"], ["-h"]):
            p = run(*argv, cwd=self.dir, timeout=60)
            self.assertTrue(p.stdout.startswith("usage: aflorad <command>"), p.stdout[:200])
            for cmd in SUBCOMMANDS:
                self.assertIn(cmd, p.stdout)
        for cmd in SUBCOMMANDS:
            if cmd == "help":
                continue
            p = run("help", cmd, cwd=self.dir, timeout=60)
            self.assertTrue(p.stdout.startswith("usage: aflorad " + cmd), p.stdout[:200])
        p = run("help", "nosuch", cwd=self.dir, check=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn("unknown command 'nosuch'", p.stderr)

    def test_version(self):
        a = run("--version", cwd=self.dir).stdout
        b = run("version", cwd=self.dir).stdout
        self.assertRegex(a, r"^aflorad \d+\.\d+\.\d+\n$")
        self.assertEqual(a, b)

    def test_usage_errors_exit_2_on_stderr(self):
        for argv in (["run"], ["run", "--bogus"], ["init-demo"], ["init-demo", "--bogus"],
                     ["demo", "--bogus", "1"], ["spec-doc", "extra"], ["predict"]):
            with self.subTest(argv=argv):
                p = run(*argv, cwd=self.dir, check=False)
                self.assertEqual(p.returncode, 2, p.stderr)
                self.assertEqual(p.stdout, "")
                self.assertIn(argv[0], p.stderr)
                self.assertEqual(os.listdir(self.dir), [])


def cpu_cores():
    """(the strongest OpenBLAS core this CPU runs, the next safer one)."""
    flags = set()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd"} <= flags:
        return "SkylakeX", "Haswell"
    if {"avx2", "fma"} <= flags:
        return "Haswell", "Prescott"
    return "Prescott", None


BLAS_LINE = r"blas: OpenBLAS [0-9.]+ core (\S+) \(from ([^)]*)\), sgemm self-check ok in \d+ ms"
NO_BLAS_SETTINGS = {"AFLORAD_BLAS_CORE": None, "AFLORAD_TEST_BLAS_CHECK_FAIL": None}


class BlasCoreTest(unittest.TestCase):
    """The OpenBLAS core `aflorad run` chooses, verifies and logs (daemon/blas_setup.h)."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.dir = cls.tmp.name
        with open(os.path.join(cls.dir, "demo.json"), "w") as f:
            json.dump({"model": "demo", "epochs": 1, "threads": 1}, f)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def run_demo(self, *flags, env=None, check=True):
        return run("run", "demo.json", "--out", "out", "--restart", *flags, cwd=self.dir,
                   env={**NO_BLAS_SETTINGS, **(env or {})}, check=check)

    def blas_line(self, p):
        import re
        m = re.search(BLAS_LINE, p.stderr)
        self.assertIsNotNone(m, p.stderr)
        self.assertIn("done ", p.stdout)   # and the job ran on it
        return m.group(1), m.group(2)

    def test_flag_then_env_then_openblas_coretype_then_auto(self):
        strong, _ = cpu_cores()
        p = self.run_demo("--blas-core", strong.lower(),
                          env={"AFLORAD_BLAS_CORE": "Prescott", "OPENBLAS_CORETYPE": "Prescott"})
        self.assertEqual(self.blas_line(p), (strong, "--blas-core"))
        p = self.run_demo(env={"AFLORAD_BLAS_CORE": "Prescott", "OPENBLAS_CORETYPE": strong})
        self.assertEqual(self.blas_line(p), ("Prescott", "AFLORAD_BLAS_CORE"))
        p = self.run_demo(env={"OPENBLAS_CORETYPE": "Prescott"})
        self.assertEqual(self.blas_line(p), ("Prescott", "OPENBLAS_CORETYPE"))
        p = self.run_demo("--blas-core=auto", env={"OPENBLAS_CORETYPE": "Prescott"})
        core, source = self.blas_line(p)
        self.assertTrue(source.startswith("auto"), source)
        if strong != "Prescott":
            self.assertEqual(core, strong)

    def test_failed_self_check_falls_back_to_a_safer_core(self):
        strong, safer = cpu_cores()
        if safer is None:
            self.skipTest("no core above Prescott on this CPU")
        p = self.run_demo("--blas-core", strong, env={"AFLORAD_TEST_BLAS_CHECK_FAIL": strong})
        self.assertIn(f"self-check failed with OpenBLAS core {strong} (from --blas-core)", p.stderr)
        self.assertEqual(self.blas_line(p), (safer, f"fallback: {strong} failed the self-check"))
        # nothing passes: refuse to train rather than train on a wrong sgemm
        p = self.run_demo(env={"AFLORAD_TEST_BLAS_CHECK_FAIL": "all"}, check=False)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("no safer core is left", p.stderr)
        self.assertNotIn("done ", p.stdout)

    def test_bad_core_names_are_usage_errors(self):
        for flags, env, words in ((["--blas-core", "Bogus"], {}, "unknown OpenBLAS core 'Bogus'"),
                                  ([], {"AFLORAD_BLAS_CORE": "bogus"}, "AFLORAD_BLAS_CORE"),
                                  (["--blas-core"], {}, "--blas-core needs a value")):
            with self.subTest(flags=flags, env=env):
                p = self.run_demo(*flags, env=env, check=False)
                self.assertEqual(p.returncode, 2, p.stderr)
                self.assertIn(words, p.stderr)
                self.assertEqual(p.stdout, "")


if __name__ == "__main__":
    unittest.main(verbosity=2)
