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

    def test_spec_doc_json_is_the_schema_with_its_defaults(self):
        schema = json.loads(run("spec-doc", "--json", cwd=self.dir).stdout)
        props = schema["properties"]
        self.assertEqual(props["batch_size"]["default"], 32)
        self.assertEqual(props["rank"]["x-default-by"], {"method": {"aflora": 4, "elora": 1024, "lora": 8}})
        self.assertEqual(props["metric"]["x-default-by"]["task"]["regression"], "pearson")
        self.assertEqual(props["dataset"]["properties"]["label_field"]["default"], "label")
        self.assertIn("init_adapter", props)

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


if __name__ == "__main__":
    unittest.main(verbosity=2)
