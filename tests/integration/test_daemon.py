#!/usr/bin/env python3
"""Integration tests of `aflorad serve`: the real binary on an ephemeral
loopback port with a temporary data directory, driven over HTTP with the
standard library. Covers the whole flow on the demo model, SSE resume,
cancel, kill -9 and SIGTERM recovery, bad requests, a token, and 50
concurrent clients."""
import concurrent.futures
import io
import json
import os
import signal
import subprocess
import tarfile
import tempfile
import time
import unittest
import urllib.error
import urllib.request

BUILD = os.environ.get("AFLORAD_BUILD", "build")
# make test-tsan runs these with two workers
WORKERS = int(os.environ.get("AFLORAD_TEST_WORKERS", "1"))
BIN = os.path.abspath(os.path.join(BUILD, "aflorad"))
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))


class Daemon:
    def __init__(self, data_dir, token=None, workers=WORKERS, args=(), env=None):
        self.data_dir = data_dir
        self.token = token
        self.workers = workers
        self.args = list(args)
        self.env = env
        self.proc = None
        self.base = None

    def start(self):
        args = [BIN, "serve", "--listen", "127.0.0.1:0", "--data-dir", self.data_dir,
                "--web-dir", os.path.join(ROOT, "web"), "--workers", str(self.workers),
                "--threads-per-job", "1", "--log-level", "warn"]
        if self.token:
            args += ["--token", self.token]
        args += self.args
        self.log = open(os.path.join(self.data_dir, "daemon.log"), "ab")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.log,
                                     env={**os.environ, **(self.env or {})})
        line = self.proc.stdout.readline().decode()
        if not line.startswith("listening on "):
            raise AssertionError(f"daemon did not start: {line!r}")
        self.base = "http://" + line.split()[-1]
        return self

    def stop(self, sig=signal.SIGTERM, timeout=60):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=timeout)
        if self.proc:
            self.proc.stdout.close()
            self.log.close()
        return self.proc.returncode

    def request(self, method, path, body=None, headers=None, raw=False):
        headers = dict(headers or {})
        data = None
        if body is not None:
            if isinstance(body, (bytes, str)):
                data = body.encode() if isinstance(body, str) else body
            else:
                data = json.dumps(body).encode()
                headers.setdefault("Content-Type", "application/json")
        if self.token and "Authorization" not in headers:
            headers["Authorization"] = "Bearer " + self.token
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                content = r.read()
                return r.status, dict(r.headers), content if raw else _json(content)
        except urllib.error.HTTPError as e:
            content = e.read()
            return e.code, dict(e.headers), content if raw else _json(content)


def _json(b):
    try:
        return json.loads(b) if b else None
    except ValueError:
        return b


def read_sse(daemon, job_id, last_id=None, max_events=None, timeout=300):
    """Events as (id, type, data) until the stream ends or max_events."""
    headers = {"Accept": "text/event-stream"}
    if last_id is not None:
        headers["Last-Event-ID"] = str(last_id)
    req = urllib.request.Request(f"{daemon.base}/jobs/{job_id}/events", headers=headers)
    events, ev = [], {}
    deadline = time.time() + timeout
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            if r.status == 204:
                return events
            assert r.headers["Content-Type"].startswith("text/event-stream")
            for raw in r:
                line = raw.decode().rstrip("\n")
                if line.startswith(":"):
                    continue
                if not line:
                    if "data" in ev:
                        events.append((int(ev["id"]), ev.get("event"), json.loads(ev["data"])))
                        if max_events and len(events) >= max_events:
                            break
                    ev = {}
                    continue
                k, _, v = line.partition(":")
                ev[k] = v[1:] if v.startswith(" ") else v
                if time.time() > deadline:
                    raise AssertionError("SSE stream too slow")
    except urllib.error.HTTPError as e:
        if e.code != 204:
            raise
    return events


def wait_job(daemon, job_id, statuses, timeout=300, min_step=0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        st, _, j = daemon.request("GET", f"/jobs/{job_id}")
        assert st == 200, j
        if j["status"] in statuses and j["progress"]["step"] >= min_step:
            return j
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} not in {statuses}: {j}")


class DaemonTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.daemons = []

    def tearDown(self):
        for d in self.daemons:
            try:
                d.stop(signal.SIGKILL)
            except Exception:
                pass
        self.tmp.cleanup()

    def daemon(self, **kw):
        d = Daemon(self.tmp.name, **kw).start()
        self.daemons.append(d)
        return d

    def small_tsv(self, d, rows=120):
        with open(os.path.join(self.tmp.name, "models/demo/train.tsv")) as f:
            return "".join(f.readlines()[:rows + 1])

    def upload(self, d, text, name="small.tsv"):
        st, _, body = d.request("POST", f"/datasets?name={name}", text,
                                {"Content-Type": "text/tab-separated-values"})
        self.assertEqual(st, 201, body)
        return body["id"]

    def test_whole_flow_on_demo(self):
        d = self.daemon()
        ds = self.upload(d, self.small_tsv(d))
        spec = {"model": "demo", "epochs": 2, "batch_size": 8, "threads": 1,
                "dataset": {"train": ds, "eval": ds}}
        # the demo with its own data takes no dataset; with an upload it needs a path model
        st, hdr, job = d.request("POST", "/jobs", {"model": "demo", "epochs": 2, "threads": 1})
        self.assertEqual(st, 201, job)
        self.assertTrue(hdr["Location"].endswith("/jobs/" + job["id"]))
        events = read_sse(d, job["id"])
        types = [t for _, t, _ in events]
        ids = [i for i, _, _ in events]
        self.assertEqual(ids, sorted(ids))
        self.assertEqual(len(ids), len(set(ids)))
        self.assertEqual(types[-1], "status")
        self.assertEqual(events[-1][2]["status"], "succeeded")
        steps = [e for _, t, e in events if t == "step"]
        self.assertEqual(steps[-1]["step"], steps[-1]["total_steps"])
        self.assertEqual(len(steps), steps[-1]["total_steps"])
        self.assertGreater(sum(1 for t in types if t == "freeze"), 0)
        self.assertEqual(sum(1 for t in types if t == "eval"), 2)
        # epochs count from 1 in events, progress and metrics alike
        self.assertEqual([e["epoch"] for _, t, e in events if t == "eval"], [1, 2])
        self.assertEqual(steps[0]["epoch"], 1)
        self.assertEqual(steps[-1]["epoch"], 2)

        st, _, j = d.request("GET", f"/jobs/{job['id']}")
        self.assertEqual(j["status"], "succeeded")
        self.assertEqual(j["progress"]["epoch"], 2)
        self.assertEqual([e["epoch"] for e in j["metrics"]["epochs"]], [1, 2])
        self.assertIn(j["metrics"]["best_epoch"], (1, 2))
        self.assertEqual(j["metrics"]["best"],
                         j["metrics"]["epochs"][j["metrics"]["best_epoch"] - 1]["metrics"])
        st, _, fr = d.request("GET", f"/jobs/{job['id']}/freezing")
        self.assertEqual(st, 200)
        froze = [e for _, t, e in events if t == "freeze"]
        for e in froze:
            module = fr["modules"].index(e["module"])
            self.assertEqual(fr["frozen_at"][e["matrix"]][e["layer"]][module], e["step"])

        st, hdr, blob = d.request("GET", f"/jobs/{job['id']}/adapter/adapter.safetensors", raw=True)
        self.assertEqual(st, 200)
        self.assertEqual(int(hdr["Content-Length"]), len(blob))
        self.assertIn("attachment", hdr["Content-Disposition"])
        st2, _, _ = d.request("GET", f"/jobs/{job['id']}/adapter/adapter.safetensors", raw=True,
                              headers={"If-None-Match": hdr["ETag"]})
        self.assertEqual(st2, 304)
        st, _, tar = d.request("GET", f"/jobs/{job['id']}/adapter/peft.tar", raw=True)
        self.assertEqual(st, 200)
        with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
            names = archive.getnames()
            self.assertIn("peft/adapter_config.json", names)
            self.assertIn("peft/adapter_model.safetensors", names)
            # the demo folder records no _name_or_path: the daemon's own name, said so
            cfg = json.load(archive.extractfile("peft/adapter_config.json"))
            self.assertEqual(cfg["base_model_name_or_path"], "demo")
            readme = archive.extractfile("peft/README.md").read().decode()
            self.assertIn("only that daemon resolves it", readme)
            labels = json.load(archive.extractfile("peft/config.json"))
            self.assertEqual(labels["id2label"], {"0": "negative", "1": "positive"})

        st, _, pred = d.request("POST", f"/jobs/{job['id']}/predict",
                                {"inputs": [{"text": "a great and lovely film"},
                                            {"text": "awful boring story"}]})
        self.assertEqual(st, 200, pred)
        self.assertEqual(len(pred["predictions"]), 2)
        for p in pred["predictions"]:
            self.assertIn(p["label"], ("negative", "positive"))
            self.assertAlmostEqual(sum(p["probabilities"]), 1.0, places=5)
        # the same adapter through the CLI gives the same logits
        with open(os.path.join(self.tmp.name, "adapter.safetensors"), "wb") as f:
            f.write(blob)
        cli = subprocess.run([BIN, "predict", "--models-dir", os.path.join(self.tmp.name, "models"),
                              "--model", "demo", "--adapter",
                              os.path.join(self.tmp.name, "adapter.safetensors"),
                              "--text", "a great and lovely film"],
                             capture_output=True, text=True, check=True)
        self.assertEqual(json.loads(cli.stdout)["logits"], pred["predictions"][0]["logits"])

        # an uploaded dataset with a model folder path is refused (the API only
        # takes model names); with the demo model name it is refused too
        st, _, err = d.request("POST", "/jobs", spec)
        self.assertEqual(st, 400)
        self.assertIn("field", err["error"])

        st, _, metrics = d.request("GET", "/metrics", raw=True)
        self.assertEqual(st, 200)
        self.assertIn(b"aflorad_jobs", metrics)

        # a job that starts from this one's adapter (init_adapter "job:<id>"):
        # the worker finds the file, so the job trains and succeeds
        st, _, second = d.request("POST", "/jobs", {"model": "demo", "epochs": 2, "threads": 1,
                                                    "init_adapter": f"job:{job['id']}"})
        self.assertEqual(st, 201, second)
        events = read_sse(d, second["id"])
        self.assertEqual(events[-1][2]["status"], "succeeded", events[-1])

    def test_full_method_model_and_init_adapter_from_a_job(self):
        """Method full's model/ folder downloads (file by file and as
        model.tar) and predicts on its own through the CLI; a second job
        starts from the first one's adapter with init_adapter "job:<id>";
        predictions keep the model loaded and refuse a pair for a
        single-text job."""
        d = self.daemon()
        st, _, full = d.request("POST", "/jobs", {"model": "demo", "epochs": 1, "threads": 1,
                                                 "method": "full", "learning_rate": 1e-4})
        self.assertEqual(st, 201, full)
        self.assertEqual(wait_job(d, full["id"], ["succeeded", "failed"])["status"], "succeeded")
        st, _, cfg = d.request("GET", f"/jobs/{full['id']}/adapter/model/config.json")
        self.assertEqual(st, 200)
        self.assertEqual(cfg["id2label"], {"0": "negative", "1": "positive"})
        st, _, tar = d.request("GET", f"/jobs/{full['id']}/adapter/model.tar", raw=True)
        self.assertEqual(st, 200)
        out = os.path.join(self.tmp.name, "dl")
        with tarfile.open(fileobj=io.BytesIO(tar)) as t:
            self.assertIn("model/vocab.txt", t.getnames())
            t.extractall(out)
        cli = subprocess.run([BIN, "predict", "--model", os.path.join(out, "model"),
                              "--text", "a great and lovely film"],
                             capture_output=True, text=True)
        self.assertEqual(cli.returncode, 0, cli.stderr)
        st, _, pred = d.request("POST", f"/jobs/{full['id']}/predict",
                                {"inputs": [{"text": "a great and lovely film"}]})
        self.assertEqual(st, 200, pred)
        for x, y in zip(json.loads(cli.stdout)["logits"], pred["predictions"][0]["logits"]):
            self.assertAlmostEqual(x, y, delta=1e-5 * max(1.0, abs(y)))
        st, _, e = d.request("GET", f"/jobs/{full['id']}/adapter/peft.tar")
        self.assertEqual(st, 404)
        self.assertIn("model/config.json", e["error"]["message"])

        st, _, a = d.request("POST", "/jobs", {"model": "demo", "epochs": 1, "threads": 1})
        self.assertEqual(wait_job(d, a["id"], ["succeeded", "failed"])["status"], "succeeded")
        st, _, b = d.request("POST", "/jobs", {"model": "demo", "epochs": 1, "threads": 1,
                                               "init_adapter": f"job:{a['id']}"})
        self.assertEqual(st, 201, b)
        self.assertEqual(wait_job(d, b["id"], ["succeeded", "failed"])["status"], "succeeded")
        st, _, e = d.request("POST", "/jobs", {"model": "demo", "method": "full",
                                               "learning_rate": 1e-4,
                                               "init_adapter": f"job:{a['id']}"})
        self.assertEqual(st, 400, e)
        self.assertEqual(e["error"]["field"], "init_adapter")
        self.assertIn("method aflora", e["error"]["message"])

        for _ in range(3):
            st, _, pred = d.request("POST", f"/jobs/{b['id']}/predict",
                                    {"inputs": [{"text": "a great and lovely film"}]})
            self.assertEqual(st, 200, pred)
        st, _, e = d.request("POST", f"/jobs/{b['id']}/predict",
                             {"inputs": [{"text": "a", "text_pair": "b"}]})
        self.assertEqual(st, 400)
        self.assertEqual(e["error"]["field"], "inputs[0].text_pair")
        st, _, metrics = d.request("GET", "/metrics", raw=True)
        loads = [l for l in metrics.decode().splitlines()
                 if l.startswith("aflorad_predict_model_loads_total ")]
        self.assertEqual(loads, ["aflorad_predict_model_loads_total 2"])   # full + b

    def test_sse_resume_loses_and_duplicates_nothing(self):
        d = self.daemon()
        st, _, job = d.request("POST", "/jobs", {"model": "demo", "epochs": 1, "threads": 1})
        self.assertEqual(st, 201)
        first = read_sse(d, job["id"], max_events=5)
        self.assertEqual(len(first), 5)
        rest = read_sse(d, job["id"], last_id=first[-1][0])
        ids = [i for i, _, _ in first + rest]
        self.assertEqual(ids, list(range(ids[0], ids[0] + len(ids))))
        # the JSON form agrees with the stream
        st, _, page = d.request("GET", f"/jobs/{job['id']}/events?after=0&limit=1000")
        self.assertEqual(st, 200)
        listed = page["events"] if isinstance(page, dict) else page
        self.assertEqual([e["id"] if "id" in e else e["seq"] for e in listed], ids)

    def test_cancel_queued_and_running(self):
        d = self.daemon()
        _, _, a = d.request("POST", "/jobs", {"model": "demo", "epochs": 200, "threads": 1})
        # every other worker busy too, so b stays queued
        others = [d.request("POST", "/jobs", {"model": "demo", "epochs": 200, "threads": 1})[2]
                  for _ in range(d.workers - 1)]
        _, _, b = d.request("POST", "/jobs", {"model": "demo", "epochs": 1, "threads": 1})
        wait_job(d, a["id"], ["running"], min_step=2)
        for o in others:
            wait_job(d, o["id"], ["running"])
        st, _, jb = d.request("POST", f"/jobs/{b['id']}/cancel")
        self.assertEqual(st, 200)
        self.assertEqual(jb["status"], "cancelled")
        st, _, ja = d.request("POST", f"/jobs/{a['id']}/cancel")
        self.assertEqual(st, 202)
        t0 = time.time()
        ja = wait_job(d, a["id"], ["cancelled"], timeout=30)
        self.assertLess(time.time() - t0, 10)
        st, _, e = d.request("POST", f"/jobs/{a['id']}/cancel")
        self.assertEqual(st, 409)
        st, _, e = d.request("GET", f"/jobs/{a['id']}/adapter/adapter.safetensors")
        self.assertEqual(st, 409)
        self.assertIn("cancelled", e["error"]["message"])

    def test_kill9_then_restart_finishes_the_job(self):
        d = self.daemon()
        _, _, job = d.request("POST", "/jobs", {"model": "demo", "epochs": 3, "threads": 1})
        # past the first epoch, so a checkpoint exists
        wait_job(d, job["id"], ["running"], min_step=70)
        d.stop(signal.SIGKILL)
        d2 = self.daemon()
        j = wait_job(d2, job["id"], ["succeeded", "failed"], timeout=300)
        self.assertEqual(j["status"], "succeeded", j.get("error"))
        self.assertEqual(j["attempts"], 2)
        events = read_sse(d2, job["id"])
        resumed = [e for _, t, e in events if t == "log" and "resumed_from_step" in e]
        self.assertEqual(len(resumed), 1)
        self.assertGreaterEqual(resumed[0]["resumed_from_step"], 63)  # an epoch end
        st, _, _ = d2.request("GET", f"/jobs/{job['id']}/adapter/adapter.safetensors", raw=True)
        self.assertEqual(st, 200)

    def test_sigterm_checkpoints_and_resumes(self):
        d = self.daemon()
        _, _, job = d.request("POST", "/jobs", {"model": "demo", "epochs": 3, "threads": 1})
        j = wait_job(d, job["id"], ["running"], min_step=20)
        self.assertEqual(d.stop(signal.SIGTERM), 0)
        d2 = self.daemon()
        j2 = wait_job(d2, job["id"], ["succeeded", "failed"], timeout=300)
        self.assertEqual(j2["status"], "succeeded", j2.get("error"))
        # the resumed run continued: every step appears exactly once in the log
        events = read_sse(d2, job["id"])
        steps = [e["step"] for _, t, e in events if t == "step"]
        self.assertEqual(steps, list(range(1, steps[-1] + 1)))

    def test_clean_restarts_are_not_failures(self):
        # more SIGTERM restarts than the crash limit (3): the job keeps going
        d = self.daemon()
        _, _, job = d.request("POST", "/jobs", {"model": "demo", "epochs": 6, "threads": 1})
        step = 0
        for _ in range(4):
            j = wait_job(d, job["id"], ["running"], min_step=step + 5)
            self.assertEqual(d.stop(signal.SIGTERM), 0)
            step = j["progress"]["step"]
            d = self.daemon()
        j = wait_job(d, job["id"], ["succeeded", "failed"], timeout=300)
        self.assertEqual(j["status"], "succeeded", j.get("error"))
        self.assertEqual(j["attempts"], 5)
        events = read_sse(d, job["id"])
        steps = [e["step"] for _, t, e in events if t == "step"]
        self.assertEqual(steps, list(range(1, steps[-1] + 1)))
        shutdowns = [e for _, t, e in events
                     if t == "status" and "shut down" in e.get("reason", "")]
        self.assertEqual(len(shutdowns), 4)

    def test_retry_resumes_a_cancelled_job(self):
        d = self.daemon()
        _, _, job = d.request("POST", "/jobs", {"model": "demo", "epochs": 3, "threads": 1})
        wait_job(d, job["id"], ["running"], min_step=30)
        self.assertEqual(d.request("POST", f"/jobs/{job['id']}/cancel")[0], 202)
        stopped = wait_job(d, job["id"], ["cancelled"], timeout=60)["progress"]["step"]
        st, _, j = d.request("POST", f"/jobs/{job['id']}/retry")
        self.assertEqual(st, 200, j)
        self.assertEqual(j["status"], "queued")
        j = wait_job(d, job["id"], ["succeeded", "failed"], timeout=300)
        self.assertEqual(j["status"], "succeeded", j.get("error"))
        events = read_sse(d, job["id"])
        resumed = [e for _, t, e in events if t == "log" and "resumed_from_step" in e]
        self.assertEqual(len(resumed), 1)
        self.assertEqual(resumed[0]["resumed_from_step"], stopped)
        st, _, e = d.request("POST", f"/jobs/{job['id']}/retry")
        self.assertEqual(st, 409)
        self.assertIn("succeeded", e["error"]["message"])

    def second_daemon(self, data_dir, listen):
        """Start another daemon and return (exit code, stderr); it must not start."""
        p = subprocess.run([BIN, "serve", "--listen", listen, "--data-dir", data_dir,
                            "--web-dir", os.path.join(ROOT, "web"), "--log-level", "warn"],
                           capture_output=True, text=True, timeout=60)
        return p.returncode, p.stdout + p.stderr

    def test_one_daemon_per_data_directory(self):
        d = self.daemon()
        rc, out = self.second_daemon(self.tmp.name, "127.0.0.1:0")
        self.assertEqual(rc, 1, out)
        self.assertNotIn("listening on", out)
        self.assertIn(f"data directory {self.tmp.name} is in use by aflorad PID {d.proc.pid}",
                      out)
        # the first one is unharmed, and once it is gone (even by kill -9)
        # the directory is free again
        self.assertEqual(d.request("GET", "/healthz")[0], 200)
        d.stop(signal.SIGKILL)
        self.assertEqual(self.daemon().request("GET", "/healthz")[0], 200)

    def test_one_daemon_per_port(self):
        d = self.daemon()
        other = os.path.join(self.tmp.name, "other")
        os.mkdir(other)
        rc, out = self.second_daemon(other, d.base[len("http://"):])
        self.assertEqual(rc, 1, out)
        self.assertNotIn("listening on", out)
        self.assertIn("Address already in use", out)
        self.assertEqual(d.request("GET", "/healthz")[0], 200)

    def test_blas_core_choice_and_fallback_are_logged(self):
        # the flag wins over AFLORAD_BLAS_CORE; a core failing the start-up
        # sgemm check is replaced by the next safer one and the daemon serves
        flags = open("/proc/cpuinfo").read()
        strong, safer = (("SkylakeX", "Haswell") if " avx512bw" in flags else
                         ("Haswell", "Prescott") if " avx2" in flags else ("Prescott", None))
        log = os.path.join(self.tmp.name, "daemon.log")
        d = self.daemon(args=["--blas-core", strong], env={"AFLORAD_BLAS_CORE": "Prescott"})
        self.assertEqual(d.request("GET", "/healthz")[0], 200)
        self.assertIn(f"core {strong} (from --blas-core), sgemm self-check ok", open(log).read())
        d.stop()
        if safer is None:
            return
        d = self.daemon(env={"AFLORAD_BLAS_CORE": strong, "AFLORAD_TEST_BLAS_CHECK_FAIL": strong})
        self.assertEqual(d.request("GET", "/healthz")[0], 200)
        text = open(log).read()
        self.assertIn(f"self-check failed with OpenBLAS core {strong} (from AFLORAD_BLAS_CORE)",
                      text)
        self.assertIn(f"core {safer} (from fallback: {strong} failed the self-check), sgemm "
                      "self-check ok", text)

    def test_bad_requests_get_clear_errors(self):
        d = self.daemon()
        cases = [
            ("POST", "/jobs", b"{not json", {"Content-Type": "application/json"}, 400, None),
            ("POST", "/jobs", {"model": "demo", "epochz": 3}, None, 400, "epochz"),
            ("POST", "/jobs", {"model": "demo", "epochs": "3"}, None, 400, "epochs"),
            ("POST", "/jobs", {"model": "no-such-model", "dataset": {"train": "0123456789abcdef"}},
             None, 400, None),
            ("POST", "/jobs", {"model": "demo", "learning_rate": -1}, None, 400, "learning_rate"),
            ("GET", "/jobs/0123456789abcdef", None, None, 404, None),
            ("GET", "/jobs/not-an-id", None, None, 400, None),
            ("GET", "/nope/../../etc/passwd", None, None, 404, None),
            ("GET", "/..%2f..%2fetc%2fpasswd", None, None, 400, None),
            ("DELETE", "/jobs", None, None, 405, None),
        ]
        for method, path, body, headers, status, word in cases:
            st, _, resp = d.request(method, path, body, headers)
            self.assertIn(st, (status,) if status != 404 else (400, 404), (method, path, resp))
            self.assertIsInstance(resp, dict, (path, resp))
            self.assertTrue(resp["error"]["message"], resp)
            if word:
                self.assertIn(word, resp["error"]["message"])
                self.assertEqual(resp["error"].get("field"), word)
        # an oversized body is refused from its Content-Length, before it is sent
        # (a client still writing it would race the early close)
        import http.client
        host, port = d.base[len("http://"):].split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.putrequest("POST", "/jobs")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(2 << 20))
        conn.endheaders()
        r = conn.getresponse()
        body = json.loads(r.read())
        conn.close()
        self.assertEqual(r.status, 413)
        self.assertEqual(body["error"]["code"], "too_large")
        self.assertIn("1048576", body["error"]["message"])  # names the limit
        # a dataset with a bad row: the error names the file and the line
        st, _, resp = d.request("POST", "/datasets?name=bad.tsv",
                                "sentence\tlabel\ngood film\tpositive\nno label here\n",
                                {"Content-Type": "text/tab-separated-values"})
        self.assertEqual(st, 400, resp)
        self.assertIn("bad.tsv:3", resp["error"]["message"])
        self.assertEqual(d.request("GET", "/healthz")[0], 200)  # still alive

    def test_unusable_model_reason_is_whole_under_a_long_path(self):
        """GET /models and POST /jobs give the whole reason a folder no model
        family reads is refused for (the supported list to its end), naming
        the model instead of the server's path, however long that path is."""
        data = os.path.join(self.tmp.name, "d" * 200, "e" * 200)
        folder = os.path.join(data, "models", "gpt2")
        os.makedirs(folder)
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
                       "vocab_size": 50257, "n_embd": 768, "n_layer": 12, "n_head": 12}, f)
        d = Daemon(data).start()
        self.daemons.append(d)
        want = ("gpt2: config.json: unsupported architecture GPT2LMHeadModel, model_type "
                "\"gpt2\" (supported: BertForSequenceClassification (bert), ")
        st, _, ms = d.request("GET", "/models")
        self.assertEqual(st, 200)
        gpt2 = next(m for m in ms["models"] if m["name"] == "gpt2")
        self.assertFalse(gpt2["usable"])
        self.assertTrue(gpt2["reason"].startswith(want), gpt2["reason"])
        self.assertTrue(gpt2["reason"].endswith("(qwen2))"), gpt2["reason"])
        st, _, e = d.request("POST", "/jobs", {"model": "gpt2",
                                               "dataset": {"train": "0123456789abcdef"}})
        self.assertEqual(st, 400, e)
        self.assertEqual(e["error"]["code"], "unusable_model")
        self.assertEqual(e["error"]["field"], "model")
        self.assertTrue(e["error"]["message"].endswith("(qwen2))"), e)
        self.assertNotIn("d" * 200, e["error"]["message"])

    def test_token_required_for_changes_and_downloads(self):
        d = self.daemon(token="s3cret")
        st, _, resp = d.request("POST", "/jobs", {"model": "demo"},
                                {"Authorization": "Bearer wrong"})
        self.assertEqual(st, 401)
        self.assertIn("token", resp["error"]["message"].lower())
        st, _, resp = d.request("POST", "/jobs", {"model": "demo"}, {"Authorization": ""})
        self.assertEqual(st, 401)
        st, _, job = d.request("POST", "/jobs", {"model": "demo", "epochs": 1})
        self.assertEqual(st, 201)

    def test_fifty_concurrent_clients(self):
        d = self.daemon()
        # a job that will stay queued behind a long one: only queueing is tested
        _, _, blocker = d.request("POST", "/jobs", {"model": "demo", "epochs": 500, "threads": 1})

        def submit(i):
            return d.request("POST", "/jobs", {"model": "demo", "epochs": 1, "seed": i})

        with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
            results = list(pool.map(submit, range(50)))
        self.assertTrue(all(st == 201 for st, _, _ in results), [r[0] for r in results])
        ids = {j["id"] for _, _, j in results}
        self.assertEqual(len(ids), 50)
        st, _, listed = d.request("GET", "/jobs?limit=100")
        jobs = listed["jobs"] if isinstance(listed, dict) else listed
        self.assertEqual(len({j["id"] for j in jobs} & ids), 50)
        for i in ids:
            d.request("POST", f"/jobs/{i}/cancel")
        d.request("POST", f"/jobs/{blocker['id']}/cancel")


if __name__ == "__main__":
    unittest.main(verbosity=2)
