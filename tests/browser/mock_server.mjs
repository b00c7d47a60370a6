// mock_server.mjs — a stand-in for `aflorad serve` for fast work on the
// dashboard: serves web/ and a fake REST API with the same routes and JSON
// shapes (models, datasets, jobs, cancel, SSE events with Last-Event-ID
// replay, the daemon's GET /jobs/{id}/freezing layout, adapter downloads),
// with simulated training that follows AFLoRA's cubic schedule. It is not a
// test of the daemon — the browser test runs against the real binary — but
// `node dashboard.test.mjs --mock` runs the same test against it.
//
// The job spec is the daemon's own: /openapi.json serves the JobSpec schema
// that `aflorad spec-doc --json` prints from the spec table (so the binary
// must be built: AFLORAD_BIN, default build/aflorad), and the mock takes its
// field list and defaults from it rather than from a copy — the presets'
// values too (x-presets), which POST /jobs applies as the daemon does.
//
//   node tests/browser/mock_server.mjs [--port 8089] [--step-ms 25] [--drop-sse-every 0] [--gen-token-ms 60]
//
// --drop-sse-every N cuts every SSE connection after N events, to watch the
// page reconnect with Last-Event-ID. POST /_mock/jobs/{id}/fail makes a job
// fail right after its next evaluation (the browser test's failed job).
//
// Causal LMs, after issue 12's API contract: LLaMA models in GET /models
// (tasks, family, target_modules and their defaults, chat template or its
// absence, training memory), POST /datasets?task=causal_lm detecting the
// row form, causal_lm jobs whose step events carry tokens, tokens_seen and
// tokens_per_second and whose evaluations carry perplexity, and
// POST /models/{name}/generate and /jobs/{id}/generate as JSON or SSE
// (token, done, error; --gen-token-ms between tokens). GET
// /_mock/generate-log lists the generation requests and whether the client
// hung up early (Stop).
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const WEB = path.resolve(HERE, '../../web');
const BIN = process.env.AFLORAD_BIN || path.resolve(HERE, '../../build/aflorad');

/** The daemon's JobSpec schema, from its spec table. */
function loadSpecSchema() {
  const r = spawnSync(BIN, ['spec-doc', '--json'], { encoding: 'utf8' });
  if (r.status !== 0) {
    console.error(`mock_server: \`${BIN} spec-doc --json\` failed (${r.error ? r.error.message : r.stderr}); build aflorad first`);
    process.exit(1);
  }
  return JSON.parse(r.stdout);
}
const SPEC_SCHEMA = loadSpecSchema();
// Fields of the API contract (issue 12) the daemon's table may not have yet:
// added so the form's causal-LM controls can be driven against the mock.
SPEC_SCHEMA.properties.activation_checkpointing ??= {
  type: 'string', enum: ['auto', 'off', 'on'], default: 'auto',
  description: 'Recompute each block\'s activations in the backward pass instead of keeping them: less memory, about a third more compute; auto turns it on when the job would not fit otherwise.',
};

/** [{name: "freeze.delta_t", s, methods}] for every leaf field of the schema. */
function specFields(schema, prefix = '', inherited = null) {
  const out = [];
  for (const [k, s] of Object.entries(schema.properties || {})) {
    const name = prefix ? `${prefix}.${k}` : k;
    const methods = s['x-methods'] || inherited;
    out.push({ name, s, methods });
    if (s.type === 'object' && s.properties) out.push(...specFields(s, name, methods));
  }
  return out;
}
const SPEC_FIELDS = specFields(SPEC_SCHEMA);
const getPath = (o, p) => p.split('.').reduce((x, k) => (x == null ? undefined : x[k]), o);
function setPath(o, p, v) {
  const parts = p.split('.');
  for (const k of parts.slice(0, -1)) o = o[k] ??= {};
  o[parts[parts.length - 1]] = v;
}

function arg(name, def) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : def;
}
const PORT = Number(arg('port', 8089));
const STEP_MS = Number(arg('step-ms', 25));
const DROP_SSE_EVERY = Number(arg('drop-sse-every', 0));

// The families' module tables (engine/model/bert.c, llama.c): target name,
// label, feed-forward; and the modules a job adapts by default.
const FAMILIES = {
  bert: {
    modules: [['query', 'query', false], ['key', 'key', false], ['value', 'value', false],
      ['attention.output.dense', 'attention output', false], ['intermediate.dense', 'intermediate', true], ['output.dense', 'output', true]],
    defaults: null,                       // every module
  },
  llama: {
    modules: [['q_proj', 'query', false], ['k_proj', 'key', false], ['v_proj', 'value', false], ['o_proj', 'attention output', false],
      ['gate_proj', 'gate', true], ['up_proj', 'up', true], ['down_proj', 'down', true]],
    defaults: ['q_proj', 'k_proj', 'v_proj', 'up_proj', 'down_proj'],
  },
};
const familyNames = (f) => FAMILIES[f].modules.map((m) => m[0]);
const familyDefaults = (f) => FAMILIES[f].defaults || familyNames(f);
const moduleRow = (f, name) => FAMILIES[f] && FAMILIES[f].modules.find((m) => m[0] === name);
const bertModel = (x) => ({ family: 'bert', tasks: ['classification', 'regression'], dtype: 'float32', tokenizer: true, tokenizer_kind: 'wordpiece',
  chat_template: null, chat_template_error: null, target_modules: familyNames('bert'), default_target_modules: familyDefaults('bert'), ...x });
const llamaModel = (x) => ({ usable: true, builtin: false, architecture: 'llama', family: 'llama', tasks: ['causal_lm'], dtype: 'float32', layers: 2, hidden_size: 32, intermediate_size: 64,
  attention_heads: 4, vocab_size: 420, context_length: 256, parameters: 52_288, tokenizer: true, tokenizer_kind: 'bpe',
  target_modules: familyNames('llama'), default_target_modules: familyDefaults('llama'),
  train_memory_bytes: 48_500_000, train_memory_note: 'batch 32 x 128 tokens, activation checkpointing off', steps_per_epoch: 20, ...x });
const MODELS = [
  bertModel({ name: 'demo', usable: true, builtin: true, architecture: 'bert', layers: 2, hidden_size: 32, intermediate_size: 64, attention_heads: 4, vocab_size: 96, context_length: 64, parameters: 23_392, train_memory_bytes: 9_400_000, train_memory_note: 'batch 32 x 128 tokens', steps_per_epoch: 63 }),
  bertModel({ name: 'mini-bert', usable: true, builtin: false, architecture: 'bert', layers: 4, hidden_size: 256, intermediate_size: 1024, attention_heads: 4, vocab_size: 30522, context_length: 512, parameters: 11_170_560, train_memory_bytes: 310_000_000, train_memory_note: 'batch 32 x 128 tokens', steps_per_epoch: 40 }),
  llamaModel({ name: 'tiny-llama', chat_template: 'chatml', chat_template_error: null }),
  llamaModel({ name: 'tiny-llama-base', chat_template: null, chat_template_error: 'tokenizer_config.json has no chat_template' }),
  { name: 'broken', usable: false, builtin: false, reason: 'broken: config.json: model_type "gpt2" is not supported (supported: bert, roberta, llama, mistral, qwen2)' },
];
/** The daemon's task tables (daemon/spec.c not_lm, lm_only). */
const NOT_LM = ['num_labels', 'dataset.labels', 'dataset.text_fields', 'dataset.label_field', 'dataset.has_header'];
const LM_ONLY = ['train_on_inputs', 'answer_rule', 'eval_max_new_tokens'];
const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8', '.json': 'application/json', '.svg': 'image/svg+xml', '.png': 'image/png' };

const datasets = [];
const jobs = new Map();        // id -> job
const listeners = new Map();   // id -> Set(fn)
let runningId = null;

const newId = () => crypto.randomBytes(8).toString('hex');
const now = () => Date.now();

function send(res, status, body, headers = {}) {
  const text = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), ...headers });
  res.end(text);
}
const fail = (res, status, code, message, field) => send(res, status, { error: { code, message, ...(field ? { field } : {}) } });

function readBody(req, limit = 16 << 20) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let n = 0;
    req.on('data', (c) => { n += c.length; if (n > limit) { reject(new Error('too large')); req.destroy(); } else chunks.push(c); });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

// ---- spec validation (a small part of the daemon's) --------------------------------
function unknownKey(obj, prefix) {
  for (const [k, v] of Object.entries(obj)) {
    const name = prefix ? `${prefix}.${k}` : k;
    const f = SPEC_FIELDS.find((x) => x.name === name);
    if (!f) return name;
    if (f.s.type === 'object' && v && typeof v === 'object') {
      const inner = unknownKey(v, name);
      if (inner) return inner;
    }
  }
  return null;
}

/** The daemon's preset_apply, from the schema's x-presets (presets.c's table
 *  as spec-doc --json prints it): fills what the spec leaves out; the
 *  learning rates only for the methods field_methods names. -> an error
 *  triple like validate's, or null. */
function applyPreset(spec) {
  if (!spec || typeof spec !== 'object' || typeof spec.preset !== 'string') return null;
  const all = (SPEC_SCHEMA.properties.preset || {})['x-presets'] || {};
  const p = all[spec.preset];
  if (!p) return ['invalid_value', `preset: unknown preset "${spec.preset}"; known: ${Object.keys(all).join(', ')}`, 'preset'];
  if (spec.task === 'causal_lm') return ['invalid_value', `preset: preset ${spec.preset} is a GLUE recipe for an encoder task; task is causal_lm`, 'preset'];
  const method = spec.method ?? 'aflora';
  for (const [k, v] of Object.entries(p.fields)) {
    if (p.field_methods[k] && !p.field_methods[k].includes(method)) continue;
    if (k === 'dataset') {
      if (spec.dataset && typeof spec.dataset === 'object') for (const [dk, dv] of Object.entries(v)) spec.dataset[dk] ??= structuredClone(dv);
    } else spec[k] ??= structuredClone(v);
  }
  return null;
}

function validate(spec) {
  if (!spec || typeof spec !== 'object' || Array.isArray(spec)) return ['invalid_json', 'the job spec must be a JSON object', null];
  const unknown = unknownKey(spec, '');
  if (unknown) return ['unknown_field', `${unknown}: unknown field`, unknown];
  if (typeof spec.model !== 'string' || !spec.model) return ['missing_field', 'model is required', 'model'];
  const model = MODELS.find((m) => m.name === spec.model);
  if (!model) return ['unknown_model', `unknown model "${spec.model}"`, 'model'];
  if (!model.usable) return ['unusable_model', `model: '${model.name}' cannot be used: ${model.reason}`, 'model'];
  const task = spec.task ?? 'classification';
  if (model.tasks && !model.tasks.includes(task)) {
    return ['invalid_value', `task: model '${model.name}' (${model.family}) cannot be trained for ${task}; it offers ${model.tasks.join(', ')}`, 'task'];
  }
  for (const f of LM_ONLY) {
    if (getPath(spec, f) !== undefined && task !== 'causal_lm') return ['conflict', `${f}: applies only to task causal_lm (task is ${task})`, f];
  }
  if (task === 'causal_lm') {
    for (const f of NOT_LM) {
      if (getPath(spec, f) !== undefined) return ['conflict', `${f}: does not apply to task causal_lm (its rows are JSON Lines; the labels are the next tokens)`, f];
    }
  }
  if (Array.isArray(spec.target_modules) && model.family) {
    const bad = spec.target_modules.find((n) => !familyNames(model.family).includes(n));
    if (bad !== undefined) return ['invalid_value', `target_modules: "${bad}" is not a module of this model (a ${model.family}); its modules: ${familyNames(model.family).join(', ')}`, 'target_modules'];
  }
  const method = spec.method ?? 'aflora';
  if (!['aflora', 'elora', 'lora', 'full'].includes(method)) return ['bad_value', 'method must be one of aflora, elora, lora, full', 'method'];
  if (spec.model === 'demo' && spec.dataset) return ['bad_field', 'the demo model trains on its built-in data: leave dataset out', 'dataset'];
  if (spec.model !== 'demo' && !(spec.dataset && spec.dataset.train)) return ['missing_field', 'dataset.train is required', 'dataset.train'];
  for (const which of ['train', 'eval']) {
    const id = spec.dataset && spec.dataset[which];
    if (!id) continue;
    const d = datasets.find((x) => x.id === id);
    if (!d) return ['unknown_dataset', `dataset.${which}: no dataset has the id ${id}`, `dataset.${which}`];
    // like the daemon: a column the data lacks is blamed on the spec field
    const label = spec.dataset.label_field ?? 'label';
    if (typeof label === 'string' && d.columns && !d.columns.includes(label)) {
      return ['invalid_dataset', `dataset.label_field: does not match the data of dataset.${which}: ${d.name}:1: no column named '${label}' in the header (columns: ${d.columns.join(', ')})`, 'dataset.label_field'];
    }
  }
  if (spec.init_adapter !== undefined) {
    // "job:<id>", as the daemon takes it over the API (api/jobs.c check_init_adapter)
    const ref = /^job:([0-9a-f]{16})$/.exec(String(spec.init_adapter));
    if (!ref) return ['invalid_value', 'init_adapter: names a file on the server, which the API does not accept; give "job:<id>" to start from a succeeded job\'s adapter', 'init_adapter'];
    const src = jobs.get(ref[1]);
    if (!src) return ['unknown_job', `init_adapter: no job has the id ${ref[1]} (GET /jobs lists them)`, 'init_adapter'];
    if (src.status !== 'succeeded') return ['not_ready', `init_adapter: job ${src.id} is ${src.status}; its adapter exists once it has succeeded`, 'init_adapter', 409];
    const theirs = src.spec, ours = normalise(spec);
    if (theirs.method !== ours.method) return ['incompatible_adapter', `init_adapter: the adapter was trained with method ${theirs.method}, this job uses ${ours.method}`, 'init_adapter'];
    if ((theirs.rank ?? 0) !== (ours.rank ?? 0)) return ['incompatible_adapter', `init_adapter: the adapter has rank ${theirs.rank}, this job ${ours.rank}`, 'init_adapter'];
    if (theirs.model !== ours.model) return ['incompatible_adapter', `init_adapter: the adapter was trained on model ${theirs.model}, this job uses ${ours.model}`, 'init_adapter'];
  }
  const ints = { epochs: [1, 1000], batch_size: [1, 4096], rank: [1, 4096], 'freeze.delta_t': [1, 100000], seed: [0, 2 ** 53 - 1] };
  for (const [f, [lo, hi]] of Object.entries(ints)) {
    const v = f.split('.').reduce((o, k) => (o == null ? undefined : o[k]), spec);
    if (v === undefined) continue;
    if (!Number.isInteger(v)) return ['bad_type', `${f} must be an integer`, f];
    if (v < lo || v > hi) return ['out_of_range', `${f} must be between ${lo} and ${hi}`, f];
  }
  if (spec.freeze && method !== 'aflora') return ['not_applicable', `freeze has no effect for method ${method}`, 'freeze'];
  if (spec.alpha !== undefined && method !== 'lora') return ['not_applicable', `alpha has no effect for method ${method}`, 'alpha'];
  for (const b of ['beta1', 'beta2']) {
    const v = spec.freeze && spec.freeze[b];
    if (v !== undefined && !(v >= 0 && v < 1)) return ['out_of_range', `freeze.${b} must be in [0, 1)`, `freeze.${b}`];
  }
  return null;
}

/** Every default the schema states (fixed, or looked up by method/task) for
 *  the fields that apply; the freezing phases (a rule in words) as the daemon
 *  works them out. */
function normalise(spec) {
  const out = structuredClone(spec);
  const method = () => out.method;
  for (const f of SPEC_FIELDS) {
    if (f.s.type === 'object' || getPath(out, f.name) !== undefined) continue;
    if (f.name.startsWith('dataset.') && !out.dataset) continue;
    let v;
    if (f.s.default !== undefined) v = f.s.default;
    else if (f.s['x-default-by']) {
      const [[by, table]] = Object.entries(f.s['x-default-by']);
      v = table[getPath(out, by)];
    }
    if (v !== undefined) setPath(out, f.name, structuredClone(v));
  }
  for (const f of SPEC_FIELDS) {   // drop what does not apply to the method
    if (f.methods && !f.methods.includes(method()) && getPath(out, f.name) !== undefined) {
      const parts = f.name.split('.');
      const parent = parts.length > 1 ? getPath(out, parts.slice(0, -1).join('.')) : out;
      if (parent) delete parent[parts[parts.length - 1]];
    }
  }
  if (method() === 'aflora') {
    out.freeze.initial_warmup_epochs ??= out.epochs < 10 ? 0.1 * out.epochs : 1;
    out.freeze.final_warmup_epochs ??= 0.7 * out.epochs;
  }
  if (method() === 'lora') out.alpha ??= 2 * out.rank;
  for (const f of out.task === 'causal_lm' ? NOT_LM : LM_ONLY) {   // the other task's fields
    const parts = f.split('.');
    const parent = parts.length > 1 ? getPath(out, parts.slice(0, -1).join('.')) : out;
    if (parent) delete parent[parts[parts.length - 1]];
  }
  return out;
}

// ---- simulated training ------------------------------------------------------------------
function emit(job, type, data) {
  const ev = { id: job.events.length + 1, type, data, created_at: now() };
  job.events.push(ev);
  for (const fn of listeners.get(job.id) || []) fn(ev);
}

function setStatus(job, status, error = null) {
  job.status = status;
  if (status === 'running') job.started_at = now();
  if (['succeeded', 'failed', 'cancelled'].includes(status)) job.finished_at = now();
  if (error) job.error = error;
  emit(job, 'status', { status, ...(error ? { error } : {}) });
}

function startsTrainable(spec, family, module) {
  if (spec.method === 'lora' || spec.method === 'full') return true;
  if (spec.method === 'elora') return false;
  if (spec.trainable_projections === 'all') return true;
  if (spec.trainable_projections === 'none') return false;
  const row = moduleRow(family, module);
  return !!(row && row[2]);
}

/** The modules a job adapts: the spec's list, or (left at the default, which
 *  lists every family's names) the family's default targets. */
function adaptedModules(spec, family) {
  const names = familyNames(family);
  const t = spec.target_modules || names;
  return t.some((n) => !names.includes(n)) ? familyDefaults(family) : t;
}

function startJob(job) {
  runningId = job.id;
  const spec = job.spec;
  const model = MODELS.find((m) => m.name === spec.model);
  const spe = model.steps_per_epoch;
  const T = spec.epochs * spe;
  const ti = Math.floor(spec.method === 'aflora' ? spec.freeze.initial_warmup_epochs * spe : T);
  const tf = Math.floor(spec.method === 'aflora' ? spec.freeze.final_warmup_epochs * spe : 0);
  const dt = spec.method === 'aflora' ? spec.freeze.delta_t : 1;
  const layers = model.layers;
  const mods = adaptedModules(spec, model.family);
  const causal = spec.task === 'causal_lm';
  const trainable = [];
  for (let l = 0; l < layers; l++) for (const m of mods) for (const x of ['A', 'B']) {
    job.freezing.set(`${l}|${m}|${x}`, null);
    if (spec.method === 'aflora' && startsTrainable(spec, model.family, m)) trainable.push({ layer: l, module: m, matrix: x, rank: Math.random() });
  }
  // the first FFN module's A freezes last, as intermediate A does in the paper's Figure 5
  const last = mods.find((m) => startsTrainable({ method: 'aflora', trainable_projections: 'ffn' }, model.family, m));
  trainable.sort((a, b) => (a.module === last && a.matrix === 'A') - (b.module === last && b.matrix === 'A') || a.rank - b.rank);
  let tokensSeen = 0;
  const nTrainable0 = trainable.length;
  const r = (t) => (t <= ti ? 1 : t > T - tf ? 0 : (1 - (t - ti) / (T - ti - tf)) ** 3);
  const perMatrixW = 2 * 32 * 128 * 4 * 64;       // weight-gradient FLOPs of one A or B
  const headW = 3e5;
  const fwd = 2.3e7; const bin = 2.1e7;
  let step = 0; let cum = { forward: 0, backward_input: 0, backward_weight: 0 }; let avgSum = 0;
  job.progress.total_steps = T;
  setStatus(job, 'running');
  emit(job, 'log', { message: `training ${spec.model} with ${spec.method}: ${T} steps` });
  job.timer = setInterval(() => {
    if (job.cancelRequested) {
      clearInterval(job.timer);
      setStatus(job, 'cancelled', 'cancelled by request');
      return next();
    }
    step++;
    const epoch = Math.floor((step - 1) / spe) + 1;   // counted from 1, as the daemon does
    if (spec.method === 'aflora' && trainable.length && (step % dt === 0 || step === T - tf + 1) && step > ti) {
      const rt = r(step);
      const keep = step > T - tf ? 0 : Math.round(rt * nTrainable0);
      while (trainable.length > keep) {
        const m = trainable.shift();
        const score = 1e-13 * (1 + Math.random());
        job.freezing.set(`${m.layer}|${m.module}|${m.matrix}`, { step, score });
        emit(job, 'freeze', { step, layer: m.layer, module: m.module, matrix: m.matrix, score });
      }
    }
    const nMat = spec.method === 'aflora' ? trainable.length : spec.method === 'lora' ? layers * mods.length * 2 : 0;
    // a causal LM's loss starts near ln(vocabulary)
    const scale = step % spe === 0 ? 0.6 : 1;                  // short last batch
    const f = { forward: fwd * scale, backward_input: bin * scale, backward_weight: (headW + nMat * perMatrixW) * scale };
    for (const k of Object.keys(cum)) cum[k] += f[k];
    const trainableNow = 1618 + nMat * 4 * 96;
    avgSum += trainableNow;
    const loss = causal ? 2.2 + 3.8 * Math.exp(-step / (T / 3)) + 0.2 * (Math.random() - 0.5)
      : 0.35 + 0.4 * Math.exp(-step / (T / 3)) + 0.12 * (Math.random() - 0.5);
    const lrPeak = spec.learning_rate;
    const wu = Math.max(1, Math.round(spec.warmup_ratio * T));
    const lr = step <= wu ? (lrPeak * step) / wu : (lrPeak * (T - step)) / Math.max(1, T - wu);
    const d = { step, total_steps: T, epoch, loss, lr, flops: f, flops_total: { ...cum }, trainable_now: trainableNow, trainable_avg: avgSum / step,
      projections_trainable: nMat, projections_total: layers * mods.length * 2, remaining_fraction: r(step), elapsed_s: (step * STEP_MS) / 1000 };
    if (causal) {
      const tokens = Math.round(spec.batch_size * spec.max_seq_len * (0.6 + 0.2 * Math.random()) * scale);
      tokensSeen += tokens;
      Object.assign(d, { tokens, tokens_seen: tokensSeen, tokens_per_second: 5200 + 800 * Math.random() });
    }
    Object.assign(job.progress, { step, epoch, loss, flops: { ...cum, total: cum.forward + cum.backward_input + cum.backward_weight },
      trainable_now: trainableNow, trainable_avg: avgSum / step, frozen: nTrainable0 - trainable.length, freezable: nTrainable0 });
    job.schedule.push({ step, r: r(step) });
    emit(job, 'step', d);
    if (step % spe === 0) {
      const acc = Math.min(0.95, 0.55 + 0.4 * (step / T) + 0.03 * Math.random());
      const evalLoss = loss + (causal ? 0.3 : 0.05);
      const metrics = causal
        ? { loss: evalLoss, perplexity: Math.exp(evalLoss), ...(spec.answer_rule && spec.answer_rule !== 'none' ? { exact_match: acc / 2, exact_match_rows: 16 } : {}) }
        : { accuracy: acc, f1: acc - 0.02, mcc: 2 * acc - 1.05, loss: evalLoss };
      job.evals.push({ epoch, step, metrics });
      emit(job, 'eval', { epoch, step, metrics });
      if (job.failAfterEval) {
        clearInterval(job.timer);
        setStatus(job, 'failed', 'mock: failed on request after an evaluation');
        return next();
      }
    }
    if (step >= T) {
      clearInterval(job.timer);
      // the best epoch by spec.metric, as the daemon picks it (mse: lowest)
      const k = spec.metric;
      const better = (a, b) => (['mse', 'perplexity'].includes(k) ? b.metrics[k] < a.metrics[k] : b.metrics[k] > a.metrics[k]);
      const best = job.evals.reduce((a, b) => (better(a, b) ? b : a), job.evals[0]);
      job.metrics = { best_epoch: best ? best.epoch : null, ...(best ? { best: best.metrics } : {}), epochs: job.evals, steps: T, final_loss: loss,
        flops: cum, trainable_params_avg: avgSum / T };
      setStatus(job, 'succeeded');
      next();
    }
  }, STEP_MS);

  function next() {
    runningId = null;
    const queued = [...jobs.values()].filter((j) => j.status === 'queued').sort((a, b) => a.created_at - b.created_at)[0];
    if (queued) startJob(queued);
  }
}

function jobJson(j) {
  return { id: j.id, status: j.status, created_at: j.created_at, started_at: j.started_at, finished_at: j.finished_at,
    cancel_requested: !!j.cancelRequested, attempts: j.started_at ? 1 : 0, error: j.error,
    train_dataset_id: (j.spec.dataset && j.spec.dataset.train) || null, eval_dataset_id: (j.spec.dataset && j.spec.dataset.eval) || null,
    progress: { ...j.progress }, metrics: j.metrics, spec: j.spec };
}

/** The daemon's layout (api/events.c, h_job_freezing): modules in spec order;
 *  frozen_at.A/B and scores.A/B are [layer][module] (null: not frozen);
 *  schedule is r(t) of every step so far. */
function freezingJson(j) {
  const model = MODELS.find((m) => m.name === j.spec.model);
  // like api/events.c: the spec's names the family has (all of the family's
  // for a spec left at the default), whatever the job adapts of them
  const modules = (j.spec.target_modules || []).filter((m) => moduleRow(model.family, m));
  const grid = (mat, what) => Array.from({ length: model.layers }, (_, l) =>
    modules.map((m) => { const c = j.freezing.get(`${l}|${m}|${mat}`); return c ? c[what] : null; }));
  return {
    job_id: j.id, status: j.status, method: j.spec.method, trainable_projections: j.spec.trainable_projections ?? null,
    total_steps: j.progress.total_steps ?? 0, layers: model.layers, family: model.family, modules,
    module_info: modules.map((m) => ({ name: m, label: moduleRow(model.family, m)[1], ffn: moduleRow(model.family, m)[2] })),
    frozen_at: { A: grid('A', 'step'), B: grid('B', 'step') },
    scores: { A: grid('A', 'score'), B: grid('B', 'score') },
    schedule: j.schedule,
  };
}

// ---- causal-LM data and generation ------------------------------------------------------
/** The causal-LM JSONL form of the rows (every row the same), rows and a
 *  token count (about 4 characters a token), or {error} naming the line. */
function causalForm(text) {
  const FORMS = [['messages', 'chat'], ['input_ids', 'input_ids'], ['instruction', 'alpaca'], ['prompt', 'prompt_completion'], ['text', 'text']];
  let form = null; let rows = 0; let chars = 0;
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (!lines[i].trim()) continue;
    let o;
    try { o = JSON.parse(lines[i]); } catch (e) { return { error: `line ${i + 1}: not JSON (${e.message})` }; }
    const f = o && typeof o === 'object' ? FORMS.find(([k]) => k in o) : null;
    if (!f) return { error: `line ${i + 1}: a row needs text, prompt/completion, instruction/output, messages or input_ids` };
    if (form && f[1] !== form) return { error: `line ${i + 1}: a ${f[1]} row in a file of ${form} rows` };
    form = f[1];
    if (form === 'chat') {
      for (const [k, m] of o.messages.entries()) {
        if (!['system', 'user', 'assistant'].includes(m.role)) return { error: `line ${i + 1}: messages[${k}].role "${m.role}" is not system, user or assistant` };
        if (!m.content) return { error: `line ${i + 1}: messages[${k}].content is empty` };
      }
    }
    rows++;
    chars += form === 'input_ids' ? 4 * o.input_ids.length : lines[i].length;
  }
  if (!rows) return { error: 'the file has no rows' };
  return { form, rows, tokens: Math.ceil(chars / 4) };
}

// Generation: deterministic words per (prompt, seed, which side), one SSE
// `token` every GEN_TOKEN_MS. "[mock:busy]" in the prompt makes the job's
// endpoint answer 503 (queue full, Retry-After); "[mock:error]" makes both
// fail mid-stream with an `error` event. Every request is logged for the test
// (GET /_mock/generate-log): its body, and whether the client hung up early.
const GEN_TOKEN_MS = Number(arg('gen-token-ms', 60));
const BASE_WORDS = [' the', ' of', ' and', ' a', ' to', ' in', ' is', ' it', ' that', ' was'];
const TUNED_WORDS = [' Once', ' upon', ' a', ' time', ' there', ' lived', ' a', ' little', ' fox', '.'];
const genLog = [];

function hash32(text) {
  let x = 2166136261;
  for (const c of text) { x ^= c.codePointAt(0); x = Math.imul(x, 16777619) >>> 0; }
  return x;
}

function generation(body, tuned) {
  const words = tuned ? TUNED_WORDS : BASE_WORDS;
  const prompt = body.prompt ?? JSON.stringify(body.messages ?? body.prompt_ids);
  const n = body.max_new_tokens ?? 64;
  const greedy = !(body.temperature > 0);
  const out = [];
  let x = hash32(`${prompt}|${greedy ? '' : body.seed ?? 0}`);
  for (let i = 0; i < n; i++) {
    x = Math.imul(x ^ (x >>> 15), 2246822507) >>> 0;
    const k = tuned && greedy ? i % words.length : x % words.length;
    out.push({ id: 10 + words.indexOf(words[k]) + (tuned ? 100 : 0), text: words[k], index: i });
  }
  return { tokens: out, promptTokens: Math.ceil(prompt.length / 4) };
}

async function generate(req, res, { model, job }) {
  let body;
  try { body = JSON.parse((await readBody(req, 1 << 20)).toString('utf8')); } catch (e) { return send(res, 400, { error: `malformed JSON: ${e.message}` }); }
  const entry = { target: job ? `job:${job.id}` : `model:${model.name}`, body, aborted: false, status: 200 };
  genLog.push(entry);
  const refuse = (status, msg, headers) => { entry.status = status; return send(res, status, { error: msg }, headers); };
  const given = ['prompt', 'messages', 'prompt_ids'].filter((k) => body[k] !== undefined);
  if (given.length !== 1) return refuse(400, 'prompt: give exactly one of prompt, messages or prompt_ids');
  if (body.messages && !model.chat_template) return refuse(400, `messages: model '${model.name}' has no chat template (${model.chat_template_error}); send a prompt`);
  if (body.max_new_tokens !== undefined && !(Number.isInteger(body.max_new_tokens) && body.max_new_tokens >= 0 && body.max_new_tokens <= 512)) {
    return refuse(400, "max_new_tokens: expected an integer from 0 to 512 (this server's limit, --generate-max-tokens)");
  }
  const prompt = String(body.prompt ?? '');
  if (job && prompt.includes('[mock:busy]')) return refuse(503, 'the generation queue is full (4 waiting, 1 running); try again later', { 'Retry-After': '2' });
  const { tokens, promptTokens } = generation(body, !!job);
  const t0 = now();
  const reply = () => ({ text: tokens.map((t) => t.text).join(''), ids: tokens.map((t) => t.id), prompt_tokens: promptTokens,
    completion_tokens: tokens.length, finish_reason: 'length', seconds: (now() - t0) / 1000 });
  if (!(req.headers.accept || '').includes('text/event-stream')) return send(res, 200, reply());
  res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', 'X-Accel-Buffering': 'no' });
  let i = 0;
  const timer = setInterval(() => {
    if (prompt.includes('[mock:error]') && i === 3) {
      clearInterval(timer);
      res.end(`event: error\ndata: ${JSON.stringify({ error: 'mock: the model produced NaN logits at token 3' })}\n\n`);
      return;
    }
    if (i < tokens.length) {
      // CRLF line ends on odd tokens: the page's parser must take both
      const nl = i % 2 ? '\r\n' : '\n';
      res.write(`event: token${nl}data: ${JSON.stringify(tokens[i])}${nl}${nl}`);
      i++;
      return;
    }
    clearInterval(timer);
    res.end(`event: done\ndata: ${JSON.stringify(reply())}\n\n`);
  }, GEN_TOKEN_MS);
  res.on('close', () => { if (!res.writableEnded) { entry.aborted = true; entry.sent = i; } clearInterval(timer); });
}

// ---- SSE --------------------------------------------------------------------------------
function sse(req, res, job) {
  res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' });
  const after = Number(req.headers['last-event-id'] || 0) || 0;
  let sent = 0;
  let closed = false;
  const write = (ev) => {
    if (closed) return;
    res.write(`id: ${ev.id}\nevent: ${ev.type}\ndata: ${JSON.stringify(ev.data)}\n\n`);
    sent++;
    if (ev.type === 'status' && ['succeeded', 'failed', 'cancelled'].includes(ev.data.status)) return end();
    // end the body (not destroy the socket, which can lose what was just
    // written): the browser takes it as a drop and reconnects with Last-Event-ID
    if (DROP_SSE_EVERY && sent >= DROP_SSE_EVERY) { closed = true; res.end(); cleanup(); }
  };
  const end = () => { if (closed) return; closed = true; res.end(); cleanup(); };
  const hb = setInterval(() => { if (!closed) res.write(': heartbeat\n\n'); }, 15000);
  const set = listeners.get(job.id) || new Set();
  listeners.set(job.id, set);
  const cleanup = () => { clearInterval(hb); set.delete(write); };
  res.write(`retry: ${DROP_SSE_EVERY ? 200 : 1000}\n\n`);
  for (const ev of job.events) if (ev.id > after) write(ev);
  if (!closed) set.add(write);
  req.on('close', () => { closed = true; cleanup(); });
}

// ---- static files -----------------------------------------------------------------------
function serveStatic(req, res, urlPath) {
  let rel = decodeURIComponent(urlPath);
  if (rel === '/' || rel === '') rel = '/index.html';
  const file = path.resolve(WEB, `.${rel}`);
  if (!file.startsWith(WEB + path.sep)) return fail(res, 404, 'not_found', 'no such file');
  fs.stat(file, (err, st) => {
    if (err || !st.isFile()) return fail(res, 404, 'not_found', `no route ${urlPath}`);
    res.writeHead(200, { 'Content-Type': TYPES[path.extname(file)] || 'application/octet-stream', 'Content-Length': st.size, 'Cache-Control': 'no-cache' });
    fs.createReadStream(file).pipe(res);
  });
}

// ---- routes -------------------------------------------------------------------------------
const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://x');
  const p = url.pathname;
  const m = p.match(/^\/jobs\/([0-9a-f]{16})(\/.*)?$/);
  try {
    if (req.method === 'GET' && p === '/healthz') return send(res, 200, { status: 'ok', database: 'ok', version: 'mock', workers: true, uptime_s: 0 });
    if (req.method === 'GET' && p === '/models') return send(res, 200, { models: MODELS.map(({ steps_per_epoch, ...x }) => x) });
    if (req.method === 'GET' && p === '/datasets') return send(res, 200, { datasets, limit: 50, offset: 0 });
    if (req.method === 'POST' && p === '/datasets') {
      const name = url.searchParams.get('name') || 'upload.tsv';
      const body = await readBody(req);
      const text = body.toString('utf8');
      const fmt = (name.split('.').pop() || '').toLowerCase();
      if (!['tsv', 'csv', 'jsonl', 'json'].includes(fmt)) return fail(res, 400, 'bad_format', 'the name must end in .tsv, .csv or .jsonl', 'name');
      const lines = text.split('\n').filter((l) => l.trim());
      const d = { id: newId(), name, format: fmt === 'json' ? 'jsonl' : fmt, rows: Math.max(0, lines.length - (fmt === 'jsonl' ? 0 : 1)), bytes: body.length,
        sha256: crypto.createHash('sha256').update(body).digest('hex'), created_at: now() };
      if (url.searchParams.get('task') === 'causal_lm') {
        const lm = causalForm(text);
        if (lm.error) return fail(res, 400, 'invalid_dataset', lm.error, 'body');
        Object.assign(d, { task: 'causal_lm', form: lm.form, rows: lm.rows, tokens: lm.tokens });
      }
      datasets.unshift(d);
      // the header's columns, to check a spec's label_field against (not in the API's answer)
      const columns = fmt === 'tsv' ? lines[0].split('\t') : fmt === 'csv' ? lines[0].split(',') : null;
      Object.defineProperty(d, 'columns', { value: columns, enumerable: false });
      return send(res, 201, d, { Location: `/datasets/${d.id}` });
    }
    if (req.method === 'POST' && p === '/jobs') {
      let spec;
      try { spec = JSON.parse((await readBody(req, 1 << 20)).toString('utf8')); } catch (e) { return fail(res, 400, 'invalid_json', `malformed JSON: ${e.message}`); }
      const bad = applyPreset(spec) || validate(spec);
      if (bad) return fail(res, bad[3] || 400, bad[0], bad[1], bad[2]);
      const job = { id: newId(), status: 'queued', spec: normalise(spec), progress: { step: 0, total_steps: null, epoch: 0, loss: null }, metrics: null,
        error: null, created_at: now(), started_at: null, finished_at: null, events: [], evals: [], freezing: new Map(), schedule: [] };
      jobs.set(job.id, job);
      emit(job, 'status', { status: 'queued' });
      if (!runningId) setTimeout(() => { if (!runningId && job.status === 'queued') startJob(job); }, 300);
      return send(res, 201, jobJson(job), { Location: `/jobs/${job.id}` });
    }
    if (req.method === 'GET' && p === '/jobs') {
      const st = url.searchParams.get('status');
      const limit = Number(url.searchParams.get('limit') || 50);
      const offset = Number(url.searchParams.get('offset') || 0);
      const list = [...jobs.values()].filter((j) => !st || j.status === st).sort((a, b) => b.created_at - a.created_at);
      return send(res, 200, { jobs: list.slice(offset, offset + limit).map(jobJson), total: list.length, limit, offset });
    }
    if (req.method === 'GET' && p === '/_mock/generate-log') return send(res, 200, genLog);
    const mg = p.match(/^\/models\/([^/]+)\/generate$/);
    if (mg && req.method === 'POST') {
      const model = MODELS.find((x) => x.name === decodeURIComponent(mg[1]));
      if (!model) return send(res, 404, { error: `model: no model named ${mg[1]}` });
      if (!(model.tasks || []).includes('causal_lm')) return send(res, 400, { error: `model: '${model.name}' is not a causal language model` });
      return generate(req, res, { model });
    }
    const hook = p.match(/^\/_mock\/jobs\/([0-9a-f]{16})\/fail$/);
    if (req.method === 'POST' && hook) {
      const job = jobs.get(hook[1]);
      if (!job) return fail(res, 404, 'not_found', `no job ${hook[1]}`);
      job.failAfterEval = true;
      return send(res, 200, { ok: true });
    }
    if (m) {
      const job = jobs.get(m[1]);
      if (!job) return fail(res, 404, 'not_found', `no job ${m[1]}`);
      const sub = m[2] || '';
      if (req.method === 'GET' && sub === '') return send(res, 200, jobJson(job));
      if (req.method === 'POST' && sub === '/cancel') {
        if (job.status === 'queued') { setStatus(job, 'cancelled', 'cancelled by request'); return send(res, 200, jobJson(job)); }
        if (job.status === 'running') { job.cancelRequested = true; return send(res, 202, jobJson(job)); }
        return fail(res, 409, 'already_finished', `job ${job.id} has already ${job.status}`);
      }
      if (req.method === 'GET' && sub === '/events') {
        if ((req.headers.accept || '').includes('text/event-stream')) return sse(req, res, job);
        const after = Number(url.searchParams.get('after') || 0);
        const limit = Number(url.searchParams.get('limit') || 1000);
        return send(res, 200, job.events.filter((e) => e.id > after).slice(0, limit));
      }
      if (req.method === 'GET' && sub === '/freezing') return send(res, 200, freezingJson(job));
      if (req.method === 'POST' && sub === '/generate') {
        if (job.spec.task !== 'causal_lm') return send(res, 400, { error: `job ${job.id} trained task ${job.spec.task}, not causal_lm: it has nothing to generate with` });
        if (job.status !== 'succeeded') return send(res, 409, { error: `job ${job.id} is ${job.status}; its adapter generates once it has succeeded` });
        return generate(req, res, { model: MODELS.find((x) => x.name === job.spec.model), job });
      }
      const dl = sub.match(/^\/adapter\/(adapter\.safetensors|peft\.tar)$/);
      if (req.method === 'GET' && dl) {
        if (job.status !== 'succeeded') return fail(res, 409, 'not_ready', `the adapter is available once the job has succeeded (it is ${job.status})`);
        const body = Buffer.from(`mock ${dl[1]} of job ${job.id}\n`);
        res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': body.length, 'Content-Disposition': `attachment; filename="${job.id}-${dl[1]}"` });
        return res.end(body);
      }
      return fail(res, 404, 'not_found', `no route ${req.method} ${p}`);
    }
    if (req.method === 'GET' && p === '/openapi.json') {
      return send(res, 200, { openapi: '3.0.3', info: { title: 'aflorad (mock)', version: '0' }, paths: {}, components: { schemas: { JobSpec: SPEC_SCHEMA } } });
    }
    if (req.method === 'GET') return serveStatic(req, res, p);
    return fail(res, 405, 'method_not_allowed', `${req.method} ${p} is not allowed`);
  } catch (e) {
    return fail(res, 500, 'internal', e.message);
  }
});

server.listen(PORT, '127.0.0.1', () => {
  console.log(`listening on 127.0.0.1:${server.address().port}`);   // the line scripts wait for, as aflorad serve prints it
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => { server.close(); process.exit(0); });
