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


if __name__ == "__main__":
    unittest.main(verbosity=2)
