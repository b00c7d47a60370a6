// api.js — the only module that knows the daemon's URLs and JSON shapes.
//
// Every response is turned into a plain "normalised" object here
// (normalizeJob, parseStep, normalizeFreezing, ...), so the views never read
// raw API keys. When the API's field names change, this file is the one to
// adjust. The parsers are deliberately tolerant (progress nested or flat,
// times in ms, seconds or ISO text, several layouts of the freezing data)
// because they were written against a contract before the API existed.
//
// Requests carry `Authorization: Bearer <token>` when the user has set a
// token (kept in localStorage); errors are thrown as ApiError with the
// API's {"error": {"code", "message", "field"}} fields.

/** The adapted modules of a BERT block in the paper's Figure-5 order, with
 *  the engine's event names (what `freeze` events and the spec use): the
 *  new-job form's choices. The job page's heatmap rows come from the daemon
 *  instead (GET /jobs/{id}/freezing module_info: the model family's table). */
export const MODULES = [
  { name: 'query', label: 'query' },
  { name: 'key', label: 'key' },
  { name: 'value', label: 'value' },
  { name: 'attention.output.dense', label: 'attention output' },
  { name: 'intermediate.dense', label: 'intermediate' },
  { name: 'output.dense', label: 'output' },
];
export const MATRICES = ['A', 'B'];
export const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);
export const STATUSES = ['queued', 'running', 'succeeded', 'failed', 'cancelled'];
export const METHODS = ['aflora', 'elora', 'lora', 'full'];

const TOKEN_KEY = 'aflorad.apiToken';

export function getToken() {
  try { return localStorage.getItem(TOKEN_KEY) || ''; } catch { return ''; }
}
export function setToken(token) {
  try {
    if (token) localStorage.setItem(TOKEN_KEY, token);
    else localStorage.removeItem(TOKEN_KEY);
  } catch { /* private mode: the token lasts for this page only */ }
}

export class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field || null;
  }
}

async function request(method, path, { body, contentType, signal } = {}) {
  const headers = { Accept: 'application/json' };
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined && contentType) headers['Content-Type'] = contentType;
  let res;
  try {
    res = await fetch(path, { method, headers, body, signal });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', `cannot reach the daemon (${e.message})`);
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (!res.ok) {
    const raw = data && data.error;
    const e = typeof raw === 'string' ? { message: raw } : raw || {};   // {"error": "text"} too
    let msg = e.message || (text && !data ? text.slice(0, 300) : `HTTP ${res.status} ${res.statusText}`);
    if (res.status === 401 && !token) msg += ' — set the API token (button at the top right).';
    throw new ApiError(res.status, e.code || `http_${res.status}`, msg, e.field);
  }
  return data;
}

const num = (x) => (typeof x === 'number' && Number.isFinite(x) ? x : null);
const pick = (...xs) => { for (const x of xs) if (x !== undefined && x !== null) return x; return null; };
function parseMaybeJson(x) {
  if (typeof x !== 'string') return x ?? null;
  try { return JSON.parse(x); } catch { return null; }
}
/** A list either bare or wrapped: [..] | {jobs: [..]} | {items: [..]} | {data: [..]}. */
function asArray(raw, key) {
  if (Array.isArray(raw)) return raw;
  if (raw && typeof raw === 'object') {
    for (const k of [key, 'items', 'data', 'results']) if (Array.isArray(raw[k])) return raw[k];
  }
  return [];
}

/** Unix ms, unix seconds or ISO text -> ms since the epoch (null: not yet). */
export function toMs(t) {
  if (typeof t === 'number') {
    if (!Number.isFinite(t) || t <= 0) return null;
    return t > 1e11 ? t : t * 1000;       // below 1e11 it must be seconds (year < 5138)
  }
  if (typeof t === 'string' && t) {
    const v = Date.parse(t);
    return Number.isFinite(v) ? v : null;
  }
  return null;
}

/** Engine or PEFT spellings of a BERT module -> its target_modules name, the
 *  one freeze events and the spec use. Other families' names (q_proj, ...)
 *  pass through: they are their own target names. */
export function normalizeModule(m) {
  if (typeof m !== 'string') return null;
  const aliases = {
    'attention.self.query': 'query', q: 'query',
    'attention.self.key': 'key', k: 'key',
    'attention.self.value': 'value', v: 'value',
    attn_out: 'attention.output.dense', 'attention.output': 'attention.output.dense',
    intermediate: 'intermediate.dense', output: 'output.dense',
  };
  return aliases[m] || m;
}
export function normalizeMatrix(x) {
  if (typeof x !== 'string') return null;
  const s = x.replace(/^lora_/i, '').toUpperCase();
  return s === 'A' || s === 'B' ? s : null;
}

// ---- models and datasets ------------------------------------------------------

const strList = (x) => (Array.isArray(x) ? x.filter((v) => typeof v === 'string') : null);

export function normalizeModel(m) {
  return {
    name: m.name ?? m.id ?? '?',
    usable: m.usable !== false,
    reason: m.reason ?? null,
    builtin: !!m.builtin,
    architecture: m.architecture ?? m.model_type ?? '',
    family: m.family ?? null,
    layers: num(pick(m.layers, m.num_hidden_layers)),
    hiddenSize: num(pick(m.hidden_size, m.hidden)),
    parameters: num(pick(m.parameters, m.params, m.parameter_count)),
    // causal LMs (and every model of a daemon that says): what it can be trained for
    tasks: strList(m.tasks),                    // null: the daemon does not say (every task offered)
    dtype: m.dtype ?? null,
    vocabSize: num(m.vocab_size),
    contextLength: num(pick(m.context_length, m.max_position_embeddings)),
    tokenizer: typeof m.tokenizer === 'boolean' ? m.tokenizer : null,
    tokenizerKind: m.tokenizer_kind ?? null,
    chatTemplate: typeof m.chat_template === 'string' && m.chat_template ? m.chat_template : null,
    chatTemplateKnown: 'chat_template' in m,    // false: the daemon does not say (not: there is none)
    chatTemplateError: m.chat_template_error ?? null,
    targetModules: strList(m.target_modules),   // the family's adapter names
    defaultTargetModules: strList(m.default_target_modules),
    trainMemoryBytes: num(m.train_memory_bytes),
    trainMemoryNote: m.train_memory_note ?? null,
  };
}

export function normalizeDataset(d) {
  return {
    id: d.id, name: d.name ?? d.id, format: d.format ?? '', rows: num(d.rows),
    bytes: num(d.bytes), sha256: d.sha256 ?? '', createdAt: toMs(d.created_at),
    task: d.task ?? null, form: d.form ?? null, tokens: num(d.tokens),
  };
}

// ---- jobs ----------------------------------------------------------------------

const FLOP_KINDS = ['forward', 'backward_input', 'backward_weight'];

function flopsOf(o, prefix) {
  // {forward, backward_input, backward_weight} or flat flops_forward, ...
  const nested = o && (o.flops_total || o.flops);
  const out = {};
  for (const k of FLOP_KINDS) {
    out[k] = num(pick(o && o[`${prefix}${k}`], nested && typeof nested === 'object' ? nested[k] : null));
  }
  return out;
}

/** The headline metric of a metrics object: accuracy, else Pearson, else MCC, ... */
export function headlineMetric(m) {
  if (!m || typeof m !== 'object') return null;
  for (const k of ['accuracy', 'pearson', 'mcc', 'f1', 'spearman', 'mse', 'exact_match', 'perplexity']) {
    if (num(m[k]) !== null) return { name: k, value: m[k] };
  }
  return null;
}

/** Metrics where the lowest value wins (the spec's metric field says so for mse). */
export const LOWER_IS_BETTER = new Set(['mse', 'perplexity']);

/** The metric that picks a job's best epoch: spec.metric (every normalised
 *  spec has it), else the headline of what there is (jobs of older daemons). */
export function bestMetricName(spec, metrics) {
  if (spec && typeof spec.metric === 'string') return spec.metric;
  const hm = headlineMetric(metrics);
  return hm ? hm.name : null;
}

/** What the job kept: the best epoch's spec.metric from its final metrics
 *  ({name, value, epoch}, epoch counted from 1), or null when it kept
 *  nothing evaluated (not succeeded, or no eval set). The jobs list and the
 *  job page both show this for a finished job, so they cannot disagree. */
export function keptBest(spec, metrics) {
  const best = metrics && metrics.best;
  const name = bestMetricName(spec, best);
  if (!best || !name || num(best[name]) === null) return null;
  return { name, value: best[name], epoch: num(metrics.best_epoch) };
}

/** The best so far of eval events [{epoch, metrics}] by the job's metric. */
export function bestOfEvals(spec, evals) {
  let best = null;
  for (const e of evals) {
    const name = bestMetricName(spec, e.metrics);
    const v = name ? num(e.metrics[name]) : null;
    if (v === null) continue;
    const better = !best || (LOWER_IS_BETTER.has(name) ? v < best.value : v > best.value);
    if (better) best = { name, value: v, epoch: e.epoch };
  }
  return best;
}

export function normalizeJob(raw) {
  const spec = parseMaybeJson(raw.spec) || {};
  const p = (raw.progress && typeof raw.progress === 'object') ? raw.progress : raw;
  const metrics = parseMaybeJson(raw.metrics);
  return {
    id: raw.id,
    status: raw.status ?? 'queued',
    spec,
    model: spec.model ?? raw.model ?? '?',
    method: spec.method ?? raw.method ?? 'aflora',
    step: num(p.step) ?? 0,
    totalSteps: num(pick(p.total_steps, p.totalSteps)),
    epoch: num(p.epoch),            // counted from 1; 0 before the first step
    loss: num(p.loss),
    flops: flopsOf(p, 'flops_'),
    trainableNow: num(p.trainable_now),
    trainableAvg: num(p.trainable_avg),
    frozen: num(p.frozen),
    freezable: num(p.freezable),
    metrics,
    bestEpoch: metrics ? num(metrics.best_epoch) : null,
    best: keptBest(spec, metrics),
    error: raw.error ?? null,
    createdAt: toMs(raw.created_at),
    startedAt: toMs(raw.started_at),
    finishedAt: toMs(raw.finished_at),
  };
}

// ---- events --------------------------------------------------------------------

export function parseStep(d) {
  return {
    step: num(d.step) ?? 0,
    totalSteps: num(d.total_steps),
    epoch: num(d.epoch),
    loss: num(d.loss),
    lr: num(d.lr),
    flops: flopsOf({ flops: d.flops }, 'x_'),
    flopsTotal: flopsOf({ flops: d.flops_total }, 'x_'),
    trainableNow: num(d.trainable_now),
    trainableAvg: num(d.trainable_avg),
    projTrainable: num(d.projections_trainable),
    projTotal: num(d.projections_total),
    remaining: num(pick(d.remaining_fraction, d.r)),
    elapsed: num(d.elapsed_s),
    tokens: num(d.tokens),                      // causal_lm: tokens in this step's batch
    tokensSeen: num(d.tokens_seen),
    tokensPerSecond: num(d.tokens_per_second),
  };
}

export function parseFreeze(d) {
  return {
    step: num(d.step),
    layer: num(d.layer),
    module: normalizeModule(d.module),
    matrix: normalizeMatrix(d.matrix),
    score: num(d.score),
  };
}

export function parseEval(d) {
  return { epoch: num(d.epoch), step: num(d.step), metrics: d.metrics || {} };
}

export const parseStatus = (d) => ({ status: d.status, error: d.error ?? null, reason: d.reason ?? null, attempt: num(d.attempt) });
export const parseLog = (d) => ({ message: String(d.message ?? '') });

// ---- freezing (Figure 5) -----------------------------------------------------------

export const cellKey = (layer, module, matrix) => `${layer}|${module}|${matrix}`;

function stepValue(v) {
  if (v === null || v === undefined) return null;
  if (typeof v === 'number') return v;
  if (typeof v === 'object') return num(pick(v.step, v.frozen_at, v.freeze_step, v.frozen_step));
  return null;
}

/**
 * The daemon's layout (api/openapi.json, schema Freezing):
 *  {layers: N, modules: ["query", ...], frozen_at: {A: [[step|null per module] per layer], B},
 *   scores: {A, B} (same shape), schedule: [{step, r}], total_steps, method,
 *   module_info: [{name, label, ffn} per module, from the model's family], ...}
 * Also accepted (the mock server's and earlier drafts'):
 *  {layers: [{layer: 0, modules: {query: {A: 12, B: null}, ...}}, ...]}
 *  {layers: [{query: {A, B}, ...}, ...]}                  (array index = layer)
 *  {layers: N, cells|matrices|projections: [{layer, module, matrix, step}]}
 *  {modules: {query: [{A, B} per layer]}}
 * plus schedule: [{step, r}] | [[step, r]] and optional phase bounds.
 * Returns {layers, cells: Map(cellKey -> step|null), schedule, initialSteps,
 *          finalStart, totalSteps, moduleInfo: heatmap rows [{name, label, ffn}] or null}.
 */
export function normalizeFreezing(raw) {
  const cells = new Map();
  const scores = new Map();
  let layers = null;
  const put = (layer, module, matrix, v, score = null) => {
    const mod = normalizeModule(module);
    const mat = normalizeMatrix(matrix);
    if (num(layer) === null || !mod || !mat) return;
    cells.set(cellKey(layer, mod, mat), stepValue(v));
    if (num(score) !== null) scores.set(cellKey(layer, mod, mat), score);
    layers = Math.max(layers ?? 0, layer + 1);
  };
  if (raw.frozen_at && typeof raw.frozen_at === 'object' && Array.isArray(raw.modules)) {
    for (const mat of MATRICES) {
      const g = raw.frozen_at[mat];
      const sg = raw.scores && raw.scores[mat];
      if (!Array.isArray(g)) continue;
      g.forEach((row, layer) => {
        if (!Array.isArray(row)) return;
        row.forEach((v, mi) => put(layer, raw.modules[mi], mat, v, Array.isArray(sg) && Array.isArray(sg[layer]) ? sg[layer][mi] : null));
      });
    }
  }
  const putModules = (layer, mods) => {
    if (Array.isArray(mods)) {
      for (const m of mods) {
        if (!m) continue;
        const name = m.module ?? m.name;
        if ('matrix' in m) put(layer, name, m.matrix, m);
        else for (const mat of MATRICES) put(layer, name, mat, pick(m[mat], m[`lora_${mat}`], m[mat.toLowerCase()]));
      }
      return;
    }
    for (const [name, ab] of Object.entries(mods || {})) {
      if (!ab || typeof ab !== 'object') continue;
      for (const mat of MATRICES) put(layer, name, mat, pick(ab[mat], ab[`lora_${mat}`], ab[mat.toLowerCase()]));
    }
  };
  const list = Array.isArray(raw.cells) ? raw.cells : Array.isArray(raw.matrices) ? raw.matrices
    : Array.isArray(raw.projections) ? raw.projections : null;
  if (list) {
    for (const c of list) put(c.layer, c.module, c.matrix, pick(c.step, c.frozen_at, c.freeze_step, c.frozen_step));
  }
  if (Array.isArray(raw.layers)) {
    raw.layers.forEach((L, i) => {
      if (!L || typeof L !== 'object') return;
      const layer = num(L.layer) ?? i;
      putModules(layer, L.modules ?? L);
    });
  } else if (raw.modules && typeof raw.modules === 'object' && !Array.isArray(raw.modules)) {
    for (const [name, perLayer] of Object.entries(raw.modules)) {
      if (!Array.isArray(perLayer)) continue;
      perLayer.forEach((ab, layer) => {
        for (const mat of MATRICES) put(layer, name, mat, ab && pick(ab[mat], ab[`lora_${mat}`]));
      });
    }
  }
  if (num(raw.layers) !== null) layers = raw.layers;
  if (num(raw.num_layers) !== null) layers = raw.num_layers;

  const sched = raw.schedule && !Array.isArray(raw.schedule) ? raw.schedule : { points: raw.schedule };
  const pts = Array.isArray(sched.points) ? sched.points : [];
  const schedule = pts.map((p) => (Array.isArray(p)
    ? { step: p[0], r: p[1] }
    : { step: num(p.step ?? p.t), r: num(pick(p.r, p.remaining_fraction, p.fraction)) }))
    .filter((p) => p.step !== null && p.r !== null);
  return {
    layers,
    cells,
    scores,
    modules: Array.isArray(raw.modules) ? raw.modules.map(normalizeModule) : null,
    moduleInfo: normalizeModuleInfo(raw.module_info),
    schedule,
    initialSteps: num(pick(sched.initial_warmup_steps, sched.t_i, raw.initial_warmup_steps)),
    finalStart: num(pick(sched.final_start_step, raw.final_start_step)),
    finalSteps: num(pick(sched.final_warmup_steps, sched.t_f, raw.final_warmup_steps)),
    totalSteps: num(pick(sched.total_steps, raw.total_steps)),
  };
}

/** The freezing response's module_info -> heatmap rows [{name, label, ffn}]
 *  (ffn null when the daemon does not know), or null when absent. */
function normalizeModuleInfo(info) {
  if (!Array.isArray(info)) return null;
  const rows = info.filter((m) => m && typeof m.name === 'string').map((m) => ({
    name: normalizeModule(m.name),
    label: typeof m.label === 'string' && m.label ? m.label : m.name,
    ffn: typeof m.ffn === 'boolean' ? m.ffn : null,
  }));
  return rows.length ? rows : null;
}

/** Whether a heatmap row's A and B start trainable, from the job spec
 *  (aflora.md §2) and the row's ffn flag (null, unknown: counted trainable). */
export function startsTrainable(spec, row) {
  const method = spec.method || 'aflora';
  if (method === 'lora' || method === 'full') return true;
  if (method === 'elora') return false;
  const proj = spec.trainable_projections || 'ffn';
  if (proj === 'all') return true;
  if (proj === 'none') return false;
  return row.ffn !== false;
}

/** Heatmap rows until GET /jobs/{id}/freezing answers with the family's
 *  (module_info): the spec's target_modules (its normalised form lists them
 *  all), named as they are. */
export function targetModules(spec) {
  const t = Array.isArray(spec.target_modules) ? spec.target_modules : [];
  return t.map((name) => ({ name: normalizeModule(name), label: name, ffn: null }));
}

/** The modules a job adapts, when the spec says (null: unknown). A spec
 *  left at the default lists every family's names (its normalised form);
 *  the daemon then adapts the model family's default_target_modules (LLaMA:
 *  q, k, v, up, down). An explicit list names only the family's modules,
 *  since the daemon refuses others when the job starts. */
export function adaptedModules(spec, model) {
  const t = Array.isArray(spec.target_modules) ? spec.target_modules.map(normalizeModule) : null;
  if (!t) return model && model.defaultTargetModules ? model.defaultTargetModules.map(normalizeModule) : null;
  const family = model && model.targetModules ? new Set(model.targetModules.map(normalizeModule)) : null;
  if (family && t.some((n) => !family.has(n))) {
    return model.defaultTargetModules ? model.defaultTargetModules.map(normalizeModule) : t.filter((n) => family.has(n));
  }
  return t;
}

/** The heatmap's rows for a job: the freezing data's module_info (the
 *  family's labels and ffn flags) or, until it answers, the spec's names,
 *  kept to the modules the job adapts (adaptedModules): never a fixed list. */
export function heatmapRows(spec, freezing, model) {
  const rows = (freezing && freezing.moduleInfo) || targetModules(spec);
  const adapted = adaptedModules(spec, model);
  if (!adapted) return rows;
  const keep = rows.filter((r) => adapted.includes(r.name));
  return keep.length ? keep : rows;
}

// ---- the calls -----------------------------------------------------------------

const enc = encodeURIComponent;

export const api = {
  /** The job spec's JSON Schema from /openapi.json (the daemon's spec table). */
  specSchema: async () => {
    const doc = await request('GET', '/openapi.json');
    const s = doc && doc.components && doc.components.schemas && doc.components.schemas.JobSpec;
    if (!s || !s.properties) throw new ApiError(0, 'no_schema', '/openapi.json has no JobSpec schema');
    return s;
  },
  models: async () => asArray(await request('GET', '/models'), 'models').map(normalizeModel),
  datasets: async () => asArray(await request('GET', '/datasets'), 'datasets').map(normalizeDataset),
  /** task "causal_lm" (and the model, whose tokenizer counts the tokens)
   *  makes the daemon validate the causal-LM JSONL forms. */
  uploadDataset: async (file, { task, model } = {}) => {
    const ext = (file.name.split('.').pop() || '').toLowerCase();
    const type = { tsv: 'text/tab-separated-values', csv: 'text/csv', jsonl: 'application/x-ndjson', json: 'application/x-ndjson' }[ext]
      || 'application/octet-stream';
    const q = new URLSearchParams({ name: file.name });
    if (task === 'causal_lm') {
      q.set('task', task);
      if (model) q.set('model', model);
    }
    return normalizeDataset(await request('POST', `/datasets?${q}`, { body: file, contentType: type }));
  },
  /** -> {jobs: [normalised], total: number|null} */
  jobs: async ({ status = '', limit = 50, offset = 0 } = {}, signal) => {
    const q = new URLSearchParams();
    if (status) q.set('status', status);
    q.set('limit', String(limit));
    q.set('offset', String(offset));
    const raw = await request('GET', `/jobs?${q}`, { signal });
    return { jobs: asArray(raw, 'jobs').map(normalizeJob), total: raw && !Array.isArray(raw) ? num(raw.total) : null };
  },
  job: async (id, signal) => normalizeJob(await request('GET', `/jobs/${enc(id)}`, { signal })),
  createJob: async (spec) => normalizeJob(await request('POST', '/jobs', {
    body: JSON.stringify(spec), contentType: 'application/json',
  })),
  cancelJob: async (id) => request('POST', `/jobs/${enc(id)}/cancel`),
  freezing: async (id, signal) => normalizeFreezing(await request('GET', `/jobs/${enc(id)}/freezing`, { signal }) || {}),
  eventsUrl: (id) => `/jobs/${enc(id)}/events`,
  /** POST targets of generation: the base model, or a finished job's adapter. */
  modelGenerateUrl: (name) => `/models/${enc(name)}/generate`,
  jobGenerateUrl: (id) => `/jobs/${enc(id)}/generate`,
  authHeaders: () => (getToken() ? { Authorization: `Bearer ${getToken()}` } : {}),
  adapterUrl: (id, file) => `/jobs/${enc(id)}/adapter/${file}`,
  /** Download through fetch (needed when a token must be sent); returns a Blob. */
  download: async (url) => {
    const headers = {};
    const token = getToken();
    if (token) headers.Authorization = `Bearer ${token}`;
    const res = await fetch(url, { headers });
    if (!res.ok) {
      let msg = `HTTP ${res.status}`;
      try { msg = (await res.json()).error.message || msg; } catch { /* not JSON */ }
      throw new ApiError(res.status, `http_${res.status}`, msg);
    }
    return res.blob();
  },
};
