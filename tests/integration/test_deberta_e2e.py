#!/usr/bin/env python3
"""A DeBERTa-v3 model folder end to end: a tiny random one written by
make_tiny_deberta.py (config.json of model_type deberta-v2 and
DebertaV2ForSequenceClassification with the v3 switches, model.safetensors
in the checkpoint's names, the deberta_spm fixture's spm.model and
tokenizer_config.json, as the hub ships deberta-v3-base) and a small
RTE-shaped sentence-pair task (sentence1, sentence2, label: the label is
whether sentence2 says "always" or "never", so it is learnt from the text).

`aflorad run` with "preset": "glue/rte" (epochs, batch and length
overridden to keep it to seconds) trains with AFLoRA: the evaluation
accuracy is far above chance and the loss falls, the FFN projections
freeze, the PEFT folder is a SEQ_CLS LoRA adapter on DeBERTa's module names
with pooler and classifier saved whole, and `aflorad predict` gives the same
predictions through the native and the PEFT adapter, on a file of pairs and
on one pair; "glue/stsb" trains and exports a regression head the same way.
`aflorad serve` lists the folder (family deberta, architecture deberta-v2,
classification and regression, an spm_unigram tokenizer, the parameters
DebertaV2ForSequenceClassification has), trains a job of the RTE preset on
uploaded files, reports its freezing on DeBERTa's modules with the
family's labels, serves its adapter (native, PEFT tar) and predicts pairs
as the CLI does with the downloaded adapter."""
import io
import json
import os
import random
import subprocess
import sys
import tarfile
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from test_daemon import BIN, Daemon, read_sse  # noqa: E402

SUBJECTS = ["the dog", "a quick fox", "the river", "my kitchen", "the garden", "a movie",
            "the encoder", "this sentence"]
LABELS = ["entailment", "not_entailment"]
MODULES = ["query_proj", "key_proj", "value_proj", "attention.output.dense",
           "intermediate.dense", "output.dense"]
# DebertaV2ForSequenceClassification of make_tiny_deberta.py's config, by
# hand: word embeddings 321x32 + LayerNorm; per layer three projections and
# attention.output.dense (32x32 + 32 each), two LayerNorms, intermediate
# (64x32 + 64) and output (32x64 + 32); rel_embeddings 2x16 rows + their
# LayerNorm; pooler 32x32 + 32, classifier 2x32 + 2. The tiny folder's
# weights hold exactly these tensors, so the file count agrees.
TINY_PARAMETERS = (321 * 32 + 64) + 2 * (4 * (32 * 32 + 32) + 64 + (64 * 32 + 64)
                                         + (32 * 64 + 32) + 64) + (32 * 32 + 64) \
    + (32 * 32 + 32) + (2 * 32 + 2)


def pairs(n, seed):
    r = random.Random(seed)
    out = []
    for i in range(n):
        s1 = f"{r.choice(SUBJECTS)} {r.choice(['was', 'is'])} " \
             f"{r.choice(['fine', 'quick', 'frozen', 'negative'])}"
        s2 = f"{r.choice(SUBJECTS)} {'always' if i % 2 == 0 else 'never'} " \
             f"{r.choice(['fine', 'quick'])}"
        out.append((s1, s2, LABELS[i % 2]))
    return out


def tsv(rows):
    return "sentence1\tsentence2\tlabel\n" + "".join("\t".join(r) + "\n" for r in rows)


def run(*args, cwd):
    p = subprocess.run([BIN, *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise AssertionError(f"aflorad {' '.join(args)} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
    return p


def load_json(path):
    with open(path) as f:
        return json.load(f)


def safetensors_names(data):
    n = int.from_bytes(data[:8], "little")
    return set(json.loads(data[8:8 + n])) - {"__metadata__"}


# Overrides that keep a job to a few seconds; the preset fills the rest.
QUICK = {"epochs": 3, "batch_size": 16, "grad_accum": 1, "max_seq_len": 32, "threads": 1}


class DebertaEndToEndTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.dir = cls.tmp.name
        cls.models = os.path.join(cls.dir, "models")
        cls.model = os.path.join(cls.models, "tiny-deberta")
        subprocess.run([sys.executable, os.path.join(HERE, "make_tiny_deberta.py"), cls.model,
                        "1"], check=True)
        cls.train, cls.dev = pairs(256, 1), pairs(64, 2)
        for name, rows in (("train.tsv", cls.train), ("dev.tsv", cls.dev)):
            with open(os.path.join(cls.dir, name), "w") as f:
                f.write(tsv(rows))

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def predict(self, adapter, *args):
        p = run("predict", "--model", self.model, "--adapter", adapter, *args, cwd=self.dir)
        return [json.loads(l) for l in p.stdout.splitlines()]

    def assert_same_predictions(self, a, b):
        self.assertEqual(len(a), len(b))
        for x, y in zip(a, b):
            self.assertEqual(x["label"], y["label"])
            for u, v in zip(x["logits"], y["logits"]):
                self.assertAlmostEqual(u, v, delta=1e-4 * max(1.0, abs(u)))

    def test_cli_run_export_and_predict(self):
        spec = dict(QUICK, model=self.model, preset="glue/rte", method="aflora",
                    dataset={"train": "train.tsv", "eval": "dev.tsv"})
        with open(os.path.join(self.dir, "rte.json"), "w") as f:
            json.dump(spec, f)
        p = run("run", "rte.json", "--out", "out", cwd=self.dir)
        self.assertIn("freeze", p.stdout)
        self.assertIn("intermediate.dense", p.stdout)  # a DeBERTa module froze, by its name
        out = os.path.join(self.dir, "out")
        metrics = load_json(os.path.join(out, "metrics.json"))
        epochs = [e["metrics"] for e in metrics["epochs"]]
        self.assertEqual(len(epochs), 3)
        self.assertEqual(metrics["labels"], LABELS)
        # the preset's metric is accuracy; chance on these balanced pairs is 0.5
        self.assertGreaterEqual(metrics["best"]["accuracy"], 0.9)
        self.assertLess(epochs[-1]["loss"], epochs[0]["loss"])
        self.assertLess(epochs[-1]["loss"], 0.5)  # ln 2 = 0.69 untrained

        peft = os.path.join(out, "adapter", "peft")
        cfg = load_json(os.path.join(peft, "adapter_config.json"))
        self.assertEqual((cfg["peft_type"], cfg["task_type"]), ("LORA", "SEQ_CLS"))
        self.assertEqual(cfg["target_modules"], MODULES)
        self.assertEqual(sorted(cfg["modules_to_save"]), ["classifier", "pooler"])
        with open(os.path.join(peft, "adapter_model.safetensors"), "rb") as f:
            names = safetensors_names(f.read())
        for layer in (0, 1):
            for path in ("attention.self.query_proj", "attention.self.key_proj",
                         "attention.self.value_proj", "attention.output.dense",
                         "intermediate.dense", "output.dense"):
                for ab in ("lora_A", "lora_B"):
                    self.assertIn(f"base_model.model.deberta.encoder.layer.{layer}.{path}.{ab}"
                                  ".weight", names)
        for head in ("pooler.dense.weight", "pooler.dense.bias", "classifier.weight",
                     "classifier.bias"):
            self.assertIn("base_model.model." + head, names)
        model_cfg = load_json(os.path.join(peft, "config.json"))
        self.assertEqual(model_cfg["architectures"], ["DebertaV2ForSequenceClassification"])
        self.assertEqual(model_cfg["model_type"], "deberta-v2")
        self.assertEqual(model_cfg["id2label"], {"0": LABELS[0], "1": LABELS[1]})

        native = self.predict("out/adapter/adapter.safetensors", "--input", "dev.tsv")
        exported = self.predict("out/adapter/peft", "--input", "dev.tsv")
        self.assert_same_predictions(native, exported)
        right = sum(p["label"] == r[2] for p, r in zip(native, self.dev))
        self.assertGreaterEqual(right / len(self.dev), 0.9)
        s1, s2, _ = self.dev[3]
        one = self.predict("out/adapter/peft", "--text", s1, "--text-pair", s2)
        self.assert_same_predictions(one, native[3:4])

    def test_cli_regression_preset(self):
        """glue/stsb on pairs scored by how often sentence2 says "always":
        the regression head trains and exports (problem_type regression)."""
        r = random.Random(3)
        rows = []
        for i in range(320):
            k = r.randrange(4)
            s2 = " ".join([r.choice(SUBJECTS)] + ["always"] * k + ["fine"])
            rows.append((f"{r.choice(SUBJECTS)} is fine", s2, f"{1.5 * k:.1f}"))
        for name, part in (("sts.tsv", rows[:256]), ("sts_dev.tsv", rows[256:])):
            with open(os.path.join(self.dir, name), "w") as f:
                f.write(tsv(part))
        spec = dict(QUICK, model=self.model, preset="glue/stsb",
                    dataset={"train": "sts.tsv", "eval": "sts_dev.tsv"})
        with open(os.path.join(self.dir, "sts.json"), "w") as f:
            json.dump(spec, f)
        run("run", "sts.json", "--out", "out_sts", cwd=self.dir)
        metrics = load_json(os.path.join(self.dir, "out_sts", "metrics.json"))
        self.assertGreaterEqual(metrics["best"]["pearson"], 0.8)
        peft = os.path.join(self.dir, "out_sts", "adapter", "peft")
        self.assertEqual(load_json(os.path.join(peft, "adapter_config.json"))["task_type"],
                         "SEQ_CLS")
        model_cfg = load_json(os.path.join(peft, "config.json"))
        self.assertEqual((model_cfg["problem_type"], model_cfg["num_labels"]), ("regression", 1))
        native = self.predict("out_sts/adapter/adapter.safetensors", "--input", "sts_dev.tsv")
        exported = self.predict("out_sts/adapter/peft", "--input", "sts_dev.tsv")
        self.assertEqual(len(native), 64)
        for a, b in zip(native, exported):
            self.assertAlmostEqual(a["value"], b["value"], delta=1e-4 * max(1.0, abs(a["value"])))

    def test_daemon_lists_trains_and_serves(self):
        data = os.path.join(self.dir, "data")
        os.makedirs(data)
        d = Daemon(data, args=["--models-dir", self.models]).start()
        try:
            self.daemon_flow(d)
        finally:
            d.stop()

    def daemon_flow(self, d):
        st, _, body = d.request("GET", "/models")
        self.assertEqual(st, 200, body)
        m = {x["name"]: x for x in body["models"]}["tiny-deberta"]
        self.assertTrue(m["usable"], m)
        self.assertEqual((m["family"], m["architecture"]), ("deberta", "deberta-v2"))
        self.assertEqual(m["tasks"], ["classification", "regression"])
        self.assertEqual((m["tokenizer"], m["tokenizer_kind"]), (True, "spm_unigram"))
        self.assertEqual(m["parameters"], TINY_PARAMETERS)
        self.assertEqual((m["vocab_size"], m["layers"], m["hidden_size"], m["dtype"]),
                         (321, 2, 32, "F32"))
        self.assertEqual(m["target_modules"], MODULES)
        self.assertGreater(m["train_memory_bytes"], 4 * TINY_PARAMETERS)

        ids = []
        for name, rows in (("rte_train.tsv", self.train), ("rte_dev.tsv", self.dev)):
            st, _, ds = d.request("POST", f"/datasets?name={name}", tsv(rows),
                                  {"Content-Type": "text/tab-separated-values"})
            self.assertEqual(st, 201, ds)
            ids.append(ds["id"])
        st, _, job = d.request("POST", "/jobs", dict(
            QUICK, model="tiny-deberta", preset="glue/rte",
            dataset={"train": ids[0], "eval": ids[1]}))
        self.assertEqual(st, 201, job)
        # the preset filled what was not given: RTE's columns, metric, rates
        self.assertEqual(job["spec"]["dataset"]["text_fields"], ["sentence1", "sentence2"])
        self.assertEqual((job["spec"]["metric"], job["spec"]["learning_rate"],
                          job["spec"]["head_learning_rate"]), ("accuracy", 1e-2, 4e-2))
        self.assertEqual(job["spec"]["epochs"], 3)
        events = read_sse(d, job["id"], timeout=120)
        self.assertEqual(events[-1][2]["status"], "succeeded", events[-1])
        evals = [e for _, t, e in events if t == "eval"]
        self.assertEqual(len(evals), 3)
        self.assertGreaterEqual(max(e["metrics"]["accuracy"] for e in evals), 0.9)
        self.assertLess(evals[-1]["metrics"]["loss"], evals[0]["metrics"]["loss"])

        st, _, fr = d.request("GET", f"/jobs/{job['id']}/freezing")
        self.assertEqual(st, 200, fr)
        self.assertEqual(fr["family"], "deberta")
        self.assertEqual(fr["modules"], MODULES)
        self.assertEqual([i["label"] for i in fr["module_info"]],
                         ["query", "key", "value", "attention output", "intermediate", "output"])
        self.assertEqual([i["ffn"] for i in fr["module_info"]], [False] * 4 + [True] * 2)
        froze = [e for _, t, e in events if t == "freeze"]
        self.assertGreater(len(froze), 0)
        for e in froze:
            self.assertIn(e["module"], ("intermediate.dense", "output.dense"))
            module = fr["modules"].index(e["module"])
            self.assertEqual(fr["frozen_at"][e["matrix"]][e["layer"]][module], e["step"])

        st, _, blob = d.request("GET", f"/jobs/{job['id']}/adapter/adapter.safetensors", raw=True)
        self.assertEqual(st, 200)
        st, _, tar = d.request("GET", f"/jobs/{job['id']}/adapter/peft.tar", raw=True)
        self.assertEqual(st, 200)
        with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
            cfg = json.load(archive.extractfile("peft/adapter_config.json"))
            self.assertEqual(cfg["task_type"], "SEQ_CLS")
            self.assertEqual(cfg["target_modules"], MODULES)
            self.assertEqual(cfg["base_model_name_or_path"], "tiny-deberta")
            names = safetensors_names(archive.extractfile("peft/adapter_model.safetensors").read())
            self.assertIn("base_model.model.deberta.encoder.layer.1.attention.self.key_proj"
                          ".lora_A.weight", names)
            self.assertIn("base_model.model.classifier.weight", names)

        inputs = [{"text": s1, "text_pair": s2} for s1, s2, _ in self.dev[:4]]
        st, _, pred = d.request("POST", f"/jobs/{job['id']}/predict", {"inputs": inputs})
        self.assertEqual(st, 200, pred)
        self.assertEqual([p["label"] for p in pred["predictions"]],
                         [r[2] for r in self.dev[:4]])
        path = os.path.join(self.dir, "daemon_adapter.safetensors")
        with open(path, "wb") as f:
            f.write(blob)
        for i in (0, 1):
            cli = self.predict(path, "--text", inputs[i]["text"], "--text-pair",
                               inputs[i]["text_pair"])
            self.assertEqual(cli[0]["logits"], pred["predictions"][i]["logits"])


if __name__ == "__main__":
    unittest.main()
