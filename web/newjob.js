// newjob.js — the "new job" form.
//
// The form writes the same JSON job spec a user would POST with curl, and
// shows it (and the curl command) live, so the form teaches the API. Only
// fields the user changed go into the spec.
//
// Fields, defaults and help come from one source: the JobSpec schema of
// GET /openapi.json, which the daemon generates from its spec table
// (daemon/spec.c). Every property of the schema gets a control chosen by its
// type (number, boolean, enum, column, list); its default is shown as the
// placeholder or the preselected value — a fixed `default`, a lookup
// `x-default-by` (rank by method, metric by task) applied to the current
// choices, or the `x-default` rule as text. Fields whose `x-methods` exclude
// the chosen method are hidden and left out, because the daemon rejects
// them. What lives here is presentation only: which group a field sits in,
// its label, and the few controls that pick among things the API lists
// (models, uploaded datasets, succeeded jobs for init_adapter). A field the
// layout does not name still appears, under "Training".
//
// Presets: the preset field's schema lists the recipes and what each fills
// (x-presets, from daemon/presets.c). Choosing one writes its values into
// the fields it sets, visibly, and lists them under the select; a field
// still showing the preset's value is left out of the spec (the daemon fills
// it from the preset), one the user changed is sent and overrides it. A new
// choice of preset (or none) rewrites the fields the old one had set.
//
// Validation is the daemon's: a 4xx answer's error.field (a dotted path
// such as "freeze.delta_t" or "dataset.text_fields[1]") is matched to the
// form control carrying that data-field, and the message appears beside it.
// The only checks made here are those the JSON cannot express (a number
// field that is not a number, no training data chosen).
import { h, fill, fmtInt, fmtNum, uid, infoTip } from './util.js';
import { api, getToken } from './api.js';

/** Where fields go ('*' = the rest of that object), in order. */
const GROUPS = [
  { legend: 'Model and task', fields: ['model', 'preset', 'task', 'num_labels', 'metric'] },
  { legend: 'Data', id: 'data-group', fields: ['dataset.*'] },
  { legend: 'Adapter', fields: ['method', 'rank', 'alpha', 'trainable_projections', 'target_modules', 'init_adapter'] },
  { legend: 'Causal language model', id: 'lm-group', fields: ['train_on_inputs', 'activation_checkpointing', 'answer_rule', 'eval_max_new_tokens'],
    note: 'Next-token training on JSON Lines rows (text, prompt/completion, Alpaca, chat messages or input_ids); evaluation reports loss and perplexity.' },
  { legend: 'Adaptive freezing (AFLoRA)', id: 'freeze-group', object: 'freeze', fields: ['freeze.*'],
    note: 'The cubic schedule keeps every projection trainable during the initial warm-up, freezes the least sensitive ones every Δt steps in between, and freezes what is left at the start of the final phase.' },
  { legend: 'Training', fields: ['*'] },
];

/** Labels people read; a field without one is named after its key. */
const LABELS = {
  model: 'Base model', preset: 'Preset (the authors\' GLUE recipe)', task: 'Task', num_labels: 'Number of labels', metric: 'Best-epoch metric',
  'dataset.train': 'Training data', 'dataset.eval': 'Evaluation data (optional)', 'dataset.format': 'Format',
  'dataset.text_fields': 'Text field(s)', 'dataset.label_field': 'Label field',
  'dataset.labels': 'Label names (optional)', 'dataset.has_header': 'First row is a header (TSV/CSV)',
  method: 'Method', rank: 'Rank r', alpha: 'LoRA alpha', trainable_projections: 'Trainable projections',
  target_modules: 'Target modules', init_adapter: 'Start from the adapter of',
  'freeze.initial_warmup_epochs': 'Initial warm-up (epochs)', 'freeze.final_warmup_epochs': 'Final phase (epochs)',
  'freeze.delta_t': 'Δt (steps per window)', 'freeze.beta1': 'β1 (sensitivity smoothing)',
  'freeze.beta2': 'β2 (uncertainty smoothing)', epochs: 'Epochs', batch_size: 'Batch size',
  grad_accum: 'Gradient accumulation', max_seq_len: 'Max sequence length',
  length_bucketing: 'Length bucketing (batch similar lengths together)', learning_rate: 'Learning rate',
  head_learning_rate: 'Head learning rate', weight_decay: 'Weight decay', warmup_ratio: 'Warm-up ratio',
  max_grad_norm: 'Max gradient norm', seed: 'Seed', threads: 'Threads', dropout: "Dropout (the base model's)",
  train_on_inputs: 'Train on inputs (loss on the prompt too)', activation_checkpointing: 'Activation checkpointing',
  answer_rule: 'Answer rule (exact match)', eval_max_new_tokens: 'Max new tokens when judging answers',
};
/** Fields of one kind of task (daemon/spec.c refuses them for the others,
 *  and so the form hides them): used when the schema has no x-tasks. */
const TASK_FIELDS = {
  causal_lm: ['train_on_inputs', 'answer_rule', 'eval_max_new_tokens'],
  encoder: ['num_labels', 'dataset.labels', 'dataset.text_fields', 'dataset.label_field', 'dataset.has_header'],
};
const ENCODER_TASKS = ['classification', 'regression'];
/** Metrics by task (the metric field's enum mixes them). */
const METRIC_TASKS = { perplexity: ['causal_lm'], exact_match: ['causal_lm'] };
const metricFits = (metric, task) => (METRIC_TASKS[metric] || ENCODER_TASKS).includes(task);
/** The causal-LM row forms the daemon detects, as people call them. */
const FORM_TEXT = { text: 'plain text', prompt_completion: 'prompt / completion', alpaca: 'Alpaca (instruction / input / output)', chat: 'chat messages', input_ids: 'token ids' };
const fmtBytes = (b) => (b >= 1 << 30 ? `${(b / (1 << 30)).toFixed(2)} GiB` : b >= 1 << 20 ? `${(b / (1 << 20)).toFixed(1)} MiB` : `${fmtInt(b)} bytes`);

const METHOD_TEXT = { aflora: 'AFLoRA', elora: 'ELoRA', lora: 'LoRA', full: 'Full fine-tuning' };

const labelOf = (name) => LABELS[name] || name.split('.').pop().replace(/_/g, ' ').replace(/^./, (c) => c.toUpperCase());

/** The schema's properties as a flat list: {name: "freeze.delta_t", s, methods}. */
export function flattenSchema(schema, prefix = '', inherited = null) {
  const out = [];
  for (const [key, s] of Object.entries(schema.properties || {})) {
    const name = prefix ? `${prefix}.${key}` : key;
    const methods = s['x-methods'] || inherited;
    if (s.type === 'object' && s.properties) out.push(...flattenSchema(s, name, methods));
    else out.push({ name, s, methods, tasks: tasksOf(name, s), required: (schema.required || []).includes(key) });
  }
  return out;
}

/** The tasks a field applies to (null: all): the schema's x-tasks, else TASK_FIELDS. */
function tasksOf(name, s) {
  if (Array.isArray(s['x-tasks'])) return s['x-tasks'];
  if (TASK_FIELDS.causal_lm.includes(name)) return ['causal_lm'];
  if (TASK_FIELDS.encoder.includes(name)) return ENCODER_TASKS;
  return null;
}

function setPath(obj, path, value) {
  const parts = path.split('.');
  let o = obj;
  for (let i = 0; i < parts.length - 1; i++) o = o[parts[i]] ??= {};
  o[parts[parts.length - 1]] = value;
}

/** "sentence1, sentence2" -> ["sentence1", "sentence2"]; "0" -> 0 (a column index). */
function parseColumn(s) {
  const t = s.trim();
  return /^\d+$/.test(t) ? Number(t) : t;
}

/** The first sentence of a description (the whole one goes in a tooltip):
 *  up to the first '.' or ';' outside parentheses ("e.g. STS-B" stays). */
function firstSentence(text) {
  const t = text || '';
  let depth = 0;
  for (let i = 0; i < t.length; i++) {
    const c = t[i];
    if (c === '(') depth++;
    else if (c === ')') depth = Math.max(0, depth - 1);
    else if (depth === 0 && (c === '.' || c === ';') && (i + 1 === t.length || /\s/.test(t[i + 1]))) return `${t.slice(0, i)}.`;
  }
  return t;
}

export function renderNewJob(root) {
  let disposed = false;
  let schema = null;
  let models = [];
  let datasets = [];
  let finished = [];                 // succeeded jobs: their adapters can start a job
  const controls = new Map();        // field name -> {wrap, input, errorEl, get(), methods, refresh?()}

  const heading = h('h2', { tabindex: -1, id: 'newjob-title' }, 'New job');
  const formError = h('div', { class: 'error-box', role: 'alert', hidden: true, id: 'form-error' });
  const form = h('form', { id: 'new-job-form', novalidate: true, 'aria-labelledby': 'newjob-title' },
    h('p', { class: 'muted' }, 'Loading the job spec…'));
  const preview = h('pre', { class: 'code', id: 'spec-preview', 'aria-live': 'off' });
  const curlPre = h('pre', { class: 'code', id: 'curl-preview' });
  const submit = h('button', { type: 'submit', class: 'primary', id: 'submit-job' }, 'Start training');

  root.append(h('section', { class: 'newjob' },
    h('div', { class: 'title-row' }, heading),
    formError,
    h('div', { class: 'newjob-layout' }, form,
      h('aside', { class: 'spec-aside', 'aria-label': 'The resulting job spec' },
        h('h3', null, 'Job spec'), h('p', { class: 'help' }, 'What the form sends: POST /jobs with this JSON.'), preview,
        h('h3', null, 'Same with curl'), curlPre))));
  heading.focus();

  // ---- the current choices the dependent defaults look up ----------------------------
  const method = () => {
    const c = form.querySelector('input[name="method"]:checked');
    return c ? c.value : (controls.get('method')?.def ?? null);
  };
  const current = (name) => {
    if (name === 'method') return method();
    const f = controls.get(name);
    if (!f) return null;
    const r = f.get();
    return r.value !== undefined ? r.value : f.def ?? null;
  };

  /** The default a field takes now: {value} (shown as the value), or {rule} (text). */
  function defaultOf(f) {
    const s = f.s;
    if (s['x-default-by']) {
      for (const [by, table] of Object.entries(s['x-default-by'])) {
        const v = table[current(by)];
        if (v !== undefined) return { value: v };
      }
      return { value: null };
    }
    if (s.default !== undefined) return { value: s.default };
    if (s['x-default']) return { rule: s['x-default'] };
    return { value: null };
  }
  const show = (v) => (Array.isArray(v) ? v.join(', ') : v === null || v === undefined ? '' : String(v));

  // ---- controls by schema type ---------------------------------------------------------
  /** The whole description, when the help line shows only its first sentence. */
  const tipFor = (desc, short, name) => (desc.length > short.length ? infoTip(desc, `About ${name}`) : null);

  function fieldWrap(f, input, extra) {
    const errId = uid('err');
    const helpId = uid('help');
    input.id ||= uid('f');
    input.setAttribute('aria-describedby', `${helpId} ${errId}`);
    const desc = f.s.description || '';
    const short = firstSentence(desc);
    const rule = f.s['x-default'] ? `Default: ${f.s['x-default']}.` : '';
    const errorEl = h('p', { class: 'field-error', id: errId, hidden: true });
    const wrap = h('div', { class: 'field', dataset: { field: f.name } },
      h('div', { class: 'label-row' }, h('label', { for: input.id }, labelOf(f.name)), tipFor(desc, short, f.name)),
      input, extra || null,
      h('p', { class: 'help', id: helpId }, [short, rule].filter(Boolean).join(' ')), errorEl);
    return Object.assign(f, { wrap, errorEl, input });
  }

  function textControl(f, parse) {
    const isNum = f.s.type === 'integer' || f.s.type === 'number';
    const input = h('input', { type: 'text', name: f.name, autocomplete: 'off', inputmode: isNum ? (f.s.type === 'integer' ? 'numeric' : 'decimal') : null });
    fieldWrap(f, input);
    f.refresh = () => {
      const d = defaultOf(f);
      input.placeholder = d.value !== null && d.value !== undefined ? show(d.value) : d.rule ? 'auto' : '';
    };
    f.get = () => {
      const t = input.value.trim();
      if (!t) return { skip: true };
      if (!isNum) return { value: parse ? parse(t) : t };
      const v = Number(t);
      if (!Number.isFinite(v)) return { error: `"${t}" is not a number` };
      return { value: v };
    };
    input.addEventListener('input', update);
    return f;
  }

  function boolControl(f) {
    const input = h('input', { type: 'checkbox', name: f.name });
    input.checked = f.s.default === true;
    f.def = f.s.default === true;
    const errorEl = h('p', { class: 'field-error', hidden: true, id: uid('err') });
    input.setAttribute('aria-describedby', errorEl.id);
    const desc = f.s.description || '';
    const short = firstSentence(desc);
    f.wrap = h('div', { class: 'field check', dataset: { field: f.name } },
      h('div', { class: 'label-row' }, h('label', null, input, ` ${labelOf(f.name)}`), tipFor(desc, short, f.name)),
      h('p', { class: 'help' }, short), errorEl);
    Object.assign(f, { input, errorEl });
    f.get = () => (input.checked === f.def ? { skip: true } : { value: input.checked });
    input.addEventListener('change', update);
    return f;
  }

  /** An enum: the fixed default preselected, or a first "default" option that
   *  names the looked-up default (metric by task) and sends nothing. */
  function enumControl(f) {
    const input = h('select', { name: f.name });
    fieldWrap(f, input);
    const fixed = f.s.default !== undefined;
    f.def = fixed ? f.s.default : '';
    const autoOpt = fixed ? null : h('option', { value: '' });
    fill(input, autoOpt, f.s.enum.map((v) => h('option', { value: v }, v)));
    input.value = f.def;
    f.refresh = () => {
      if (!autoOpt) return;
      const d = defaultOf(f);
      autoOpt.textContent = d.value ? `default (${d.value})` : 'default';
    };
    f.get = () => (input.value === f.def ? { skip: true } : { value: input.value });
    input.addEventListener('change', update);
    return f;
  }

  /** Method: radio buttons; its help quotes the schema's words for the choice. */
  function methodControl(f) {
    const box = h('fieldset', { class: 'segmented', id: 'method' }, h('legend', null, labelOf(f.name)));
    f.def = f.s.default;
    for (const m of f.s.enum) {
      const r = h('input', { type: 'radio', name: 'method', value: m, id: `method-${m}` });
      r.checked = m === f.def;
      r.addEventListener('change', update);
      box.append(h('label', { for: r.id }, r, h('span', null, METHOD_TEXT[m] || m)));
    }
    const help = h('p', { class: 'help', id: 'method-help' });
    const errorEl = h('p', { class: 'field-error', hidden: true });
    f.wrap = h('div', { class: 'field', dataset: { field: f.name } }, box, errorEl, help);
    Object.assign(f, { input: box.querySelector('input'), errorEl });
    // "aflora: low-rank A and B ...; elora: ...": the part for the chosen method
    const parts = Object.fromEntries((f.s.description || '').split(/;\s*/).map((p) => {
      const i = p.indexOf(':');
      return [p.slice(0, i).trim(), p.slice(i + 1).trim().replace(/\.$/, '')];
    }));
    f.refresh = () => {
      const p = parts[method()];
      help.textContent = p ? `${p[0].toUpperCase()}${p.slice(1)}.` : '';
    };
    f.get = () => (method() === f.def ? { skip: true } : { value: method() });
    return f;
  }

  /** An array of enum strings (target_modules): one checkbox each, the
   *  default checked. For target_modules the boxes are the chosen model's
   *  family's names (GET /models target_modules) with its defaults checked;
   *  a daemon that does not list them gets the schema's whole enum. */
  function checksControl(f) {
    const box = h('fieldset', { class: 'checks', id: f.name === 'target_modules' ? 'target-modules' : null }, h('legend', null, labelOf(f.name)));
    const errorEl = h('p', { class: 'field-error', hidden: true });
    const help = h('p', { class: 'help' }, firstSentence(f.s.description));
    f.wrap = h('div', { class: 'field', dataset: { field: f.name } }, box, errorEl, help);
    let def = [];
    let itemsKey = '';
    f.setItems = (items, defaults) => {
      const key = JSON.stringify([items, defaults]);
      if (key === itemsKey) return;
      itemsKey = key;
      def = defaults;
      for (const l of [...box.querySelectorAll('label')]) l.remove();
      for (const m of items) {
        const c = h('input', { type: 'checkbox', value: m });
        c.checked = def.includes(m);
        c.defaultChecked = c.checked;      // what the form's Reset returns to
        c.addEventListener('change', update);
        box.append(h('label', null, c, ` ${m}`));
      }
      f.input = box.querySelector('input');
    };
    f.setItems(f.s.items.enum, Array.isArray(f.s.default) ? f.s.default : f.s.items.enum);
    Object.assign(f, { errorEl });
    f.get = () => {
      const on = [...box.querySelectorAll('input')].filter((c) => c.checked).map((c) => c.value);
      if (!on.length) return { error: 'choose at least one' };
      return on.length === def.length && on.every((x) => def.includes(x)) ? { skip: true } : { value: on };
    };
    return f;
  }

  /** The recipe select (none + x-presets' names) and the list of what the
   *  chosen one sets; the pre-filling is syncPreset's. */
  const presetValues = h('ul', { class: 'help preset-values', id: 'preset-values', 'aria-live': 'polite' });
  function presetControl(f) {
    const sel = h('select', { name: f.name, id: 'preset' });
    fieldWrap(f, sel, presetValues);
    fill(sel, h('option', { value: '' }, '— none —'), Object.keys(f.s['x-presets']).map((n) => h('option', { value: n }, n)));
    f.get = () => (sel.value ? { value: sel.value } : { skip: true });
    sel.addEventListener('change', update);
    return f;
  }

  // GET /models lists "demo" and every folder of the daemon's models
  // directory; the API accepts no other model (no server paths).
  const modelInfo = h('p', { class: 'help', id: 'model-info' });
  function modelControl(f) {
    const input = h('select', { name: 'model', id: 'model' });
    fieldWrap(f, input, modelInfo);
    f.fill = () => {
      fill(input, models.map((m) => h('option', { value: m.name, disabled: !m.usable },
        m.usable ? m.name : `${m.name} (unusable: ${m.reason || 'see the daemon log'})`)));
      const builtin = models.find((m) => m.builtin && m.usable);
      const first = models.find((m) => m.usable);
      input.value = builtin ? builtin.name : first ? first.name : '';
    };
    f.get = () => (input.value ? { value: input.value } : { error: 'choose a model' });
    input.addEventListener('change', update);
    return f;
  }

  // Over the API a job names uploaded datasets by id (server paths are refused).
  function datasetControl(f, optional) {
    const sel = h('select', { name: f.name });
    fieldWrap(f, sel);
    f.fill = () => {
      const keep = sel.value;
      fill(sel,
        h('option', { value: '' }, optional ? '— none —' : '— choose —'),
        datasets.map((d) => h('option', { value: d.id }, [d.name, d.form ? FORM_TEXT[d.form] || d.form : null,
          d.rows !== null ? `${fmtInt(d.rows)} rows` : d.format, d.id].filter(Boolean).join(' · '))));
      sel.value = [...sel.options].some((o) => o.value === keep) ? keep : '';
    };
    f.get = () => {
      if (sel.value) return { value: sel.value };
      return optional ? { skip: true } : { error: 'choose a training file (upload one first)' };
    };
    sel.addEventListener('change', update);
    return f;
  }

  // init_adapter over the API: "job:<id>", a succeeded job's adapter (the
  // daemon checks that it fits this spec and names what differs).
  function adapterControl(f) {
    const sel = h('select', { name: f.name });
    fieldWrap(f, sel);
    f.fill = () => {
      const keep = sel.value;
      fill(sel, h('option', { value: '' }, '— a fresh adapter —'),
        finished.map((j) => h('option', { value: `job:${j.id}` },
          `${j.id} · ${j.model} · ${j.method}${j.best ? ` · ${j.best.name} ${fmtNum(j.best.value)}` : ''}`)));
      sel.value = [...sel.options].some((o) => o.value === keep) ? keep : '';
    };
    f.get = () => (sel.value ? { value: sel.value } : { skip: true });
    sel.addEventListener('change', update);
    return f;
  }

  function controlFor(f) {
    const s = f.s;
    if (f.name === 'model') return modelControl(f);
    if (f.name === 'dataset.train' || f.name === 'dataset.eval') return datasetControl(f, !f.required);
    if (f.name === 'init_adapter') return adapterControl(f);
    if (f.name === 'method') return methodControl(f);
    if (f.name === 'preset' && s['x-presets']) return presetControl(f);
    if (s.type === 'boolean') return boolControl(f);
    if (Array.isArray(s.enum)) return enumControl(f);
    if (s.type === 'array' && s.items && Array.isArray(s.items.enum)) return checksControl(f);
    if (s.type === 'array' && s.items && s.items.oneOf) {
      return textControl(f, (t) => t.split(',').map(parseColumn).filter((x) => x !== ''));
    }
    if (s.type === 'array') return textControl(f, (t) => t.split(',').map((x) => x.trim()).filter(Boolean));
    if (s.oneOf) return textControl(f, parseColumn);
    return textControl(f, null);
  }

  // ---- the upload box (not a spec field: it fills the dataset pickers) --------------------
  const upload = h('input', { type: 'file', id: 'dataset-upload', accept: '.tsv,.csv,.jsonl,.json,text/tab-separated-values,text/csv' });
  const uploadStatus = h('p', { class: 'help', 'aria-live': 'polite', id: 'upload-status' });
  const uploadErr = h('p', { class: 'field-error', hidden: true });
  upload.addEventListener('change', async () => {
    const file = upload.files && upload.files[0];
    if (!file) return;
    uploadErr.hidden = true;
    uploadStatus.textContent = `Uploading ${file.name} (${fmtInt(file.size)} bytes)…`;
    try {
      const mc = controls.get('model');
      const d = await api.uploadDataset(file, { task: currentTask(), model: mc ? mc.input.value : null });
      await loadDatasets();
      const train = controls.get('dataset.train');
      const ev = controls.get('dataset.eval');
      if (train && !train.input.value) train.input.value = d.id;
      else if (ev && !ev.input.value) ev.input.value = d.id;
      uploadStatus.textContent = `Uploaded ${d.name}: ${[d.form ? `form ${FORM_TEXT[d.form] || d.form}` : null,
        d.rows !== null ? `${fmtInt(d.rows)} rows` : null, d.tokens !== null ? `${fmtInt(d.tokens)} tokens` : null, `id ${d.id}`].filter(Boolean).join(', ')}.`;
      upload.value = '';
      update();
    } catch (e) {
      uploadStatus.textContent = '';
      uploadErr.hidden = false;
      uploadErr.textContent = `Upload failed: ${e.message}`;
    }
  });
  const uploadBox = h('div', { class: 'field', dataset: { field: 'upload' } },
    h('label', { for: 'dataset-upload' }, 'Upload a data file (TSV, CSV or JSONL)'), upload, uploadStatus, uploadErr);
  // causal_lm: the training data's detected form, and the model's chat template
  const dataForm = h('p', { class: 'help', id: 'data-form', 'aria-live': 'polite' });
  const chatInfo = h('p', { class: 'help', id: 'chat-template' });
  const chatWarning = h('p', { class: 'warning', id: 'chat-warning', role: 'status', hidden: true });
  const lmInfo = h('div', { class: 'lm-info' }, dataForm, chatInfo, chatWarning);
  const dataDemoNote = h('p', { class: 'note' }, 'The demo model trains on its own built-in synthetic sentiment data; a spec for it names no dataset.');

  // ---- building the form from the schema --------------------------------------------------
  let dataFields = null;
  let freezeBox = null;
  let freezeMethods = null;
  let lmBox = null;

  function build() {
    const fields = flattenSchema(schema);
    const placed = new Set();
    const matches = (pattern, name) => (pattern === '*' ? true
      : pattern.endsWith('.*') ? name.startsWith(pattern.slice(0, -1)) : pattern === name);
    const groups = GROUPS.map((g) => ({ ...g, items: [] }));
    for (const g of groups) {
      for (const pattern of g.fields) {
        for (const f of fields) {
          if (placed.has(f.name) || !matches(pattern, f.name)) continue;
          placed.add(f.name);
          g.items.push(f);
        }
      }
    }
    fill(form);
    for (const g of groups) {
      if (!g.items.length) continue;
      const made = g.items.map((f) => { const c = controlFor(f); controls.set(f.name, c); return c.wrap; });
      let body;
      if (g.id === 'data-group') {
        // the upload box right after the two dataset pickers
        const at = g.items.findIndex((f) => f.name === 'dataset.eval') + 1 || 2;
        made.splice(at, 0, uploadBox);
        dataFields = h('div', { class: 'grid' }, made);
        body = [dataDemoNote, dataFields];
      } else if (g.legend === 'Adapter') {
        const m = controls.get('method');
        body = [m ? m.wrap : null, h('div', { class: 'grid' }, made.filter((w) => !m || w !== m.wrap))];
      } else {
        body = [g.note ? h('p', { class: 'help' }, g.note) : null, g.id === 'lm-group' ? lmInfo : null, h('div', { class: 'grid' }, made)];
      }
      const box = h('fieldset', { class: 'group', id: g.id || null }, h('legend', null, g.legend), body);
      if (g.id === 'lm-group') lmBox = box;
      if (g.object) {
        freezeBox = box;
        freezeMethods = (schema.properties[g.object] || {})['x-methods'] || null;
      }
      form.append(box);
    }
    form.append(h('div', { class: 'form-actions' }, submit, h('button', { type: 'reset', class: 'secondary' }, 'Reset')));
  }
  form.addEventListener('reset', () => setTimeout(update, 0));
  form.addEventListener('submit', onSubmit);

  // ---- behaviour ---------------------------------------------------------------------
  const currentTask = () => {
    const t = controls.get('task');
    return t ? t.input.value : 'classification';
  };
  const applies = (f) => (!f.methods || f.methods.includes(method())) && (!f.tasks || f.tasks.includes(currentTask()));

  function selectedModel() {
    const mc = controls.get('model');
    return mc ? models.find((x) => x.name === mc.input.value) || null : null;
  }
  function isDemo() {
    const mi = selectedModel();
    return !!(mi && mi.builtin);
  }

  /** The choices that follow the model: its tasks, its family's target
   *  modules, the metrics of the task. */
  function followModel(mi) {
    const task = controls.get('task');
    if (task) {
      const offered = mi && mi.tasks ? mi.tasks : null;
      for (const o of task.input.options) {
        const ok = !offered || offered.includes(o.value);
        o.disabled = !ok;
        o.hidden = !ok;
      }
      if (offered && offered.length && !offered.includes(task.input.value)) task.input.value = offered[0];
    }
    const tm = controls.get('target_modules');
    if (tm && tm.setItems) {
      const items = mi && mi.targetModules && mi.targetModules.length ? mi.targetModules : tm.s.items.enum;
      const defs = mi && mi.targetModules && mi.targetModules.length
        ? (mi.defaultTargetModules || mi.targetModules).filter((x) => items.includes(x))
        : (Array.isArray(tm.s.default) ? tm.s.default : items);
      tm.setItems(items, defs);
    }
    const metric = controls.get('metric');
    if (metric) {
      const t = currentTask();
      for (const o of metric.input.options) {
        if (!o.value) continue;
        const ok = metricFits(o.value, t);
        o.disabled = !ok;
        o.hidden = !ok;
      }
      if (metric.input.value && !metricFits(metric.input.value, t)) metric.input.value = '';
    }
  }

  /** The causal-LM notes: the training data's form, the model's chat template
   *  and a warning when chat rows meet a model without a known one. */
  function describeLm(mi) {
    const train = controls.get('dataset.train');
    const d = train && train.input.value ? datasets.find((x) => x.id === train.input.value) : null;
    dataForm.textContent = d
      ? `Training data: ${d.form ? `${FORM_TEXT[d.form] || d.form} rows` : 'form not reported by the daemon'}${d.rows !== null ? `, ${fmtInt(d.rows)} rows` : ''}${d.tokens !== null ? `, ${fmtInt(d.tokens)} tokens` : ''}.`
      : 'Training data: upload a JSON Lines file to see its form (text, prompt/completion, Alpaca, chat or input_ids).';
    if (d && d.form) dataForm.dataset.form = d.form; else delete dataForm.dataset.form;
    const known = !!(mi && mi.chatTemplateKnown);
    const tpl = known ? mi.chatTemplate : null;
    chatInfo.textContent = !known ? '' : tpl ? `Chat template: ${tpl}.`
      : `Chat template: none known${mi.chatTemplateError ? ` (${mi.chatTemplateError})` : ''}.`;
    const chatData = !!(d && d.form === 'chat');
    chatWarning.hidden = !(chatData && known && !tpl);
    chatWarning.textContent = chatWarning.hidden ? ''
      : `${d.name} holds chat messages, but ${mi.name} has no known chat template${mi.chatTemplateError ? ` (${mi.chatTemplateError})` : ''}: the daemon cannot render its turns. Choose a model with a template, or convert the rows to prompt/completion.`;
  }

  // ---- presets ------------------------------------------------------------------------
  const presetShown = new Map();     // field -> the text the preset put in its control
  let presetApplied = '';            // the preset those values are from ('' none)

  /** The chosen preset's values for the current method, flattened:
   *  Map("dataset.text_fields" -> value). */
  function presetWants(name) {
    const out = new Map();
    const p = name ? controls.get('preset').s['x-presets'][name] : null;
    if (!p) return out;
    const walk = (o, prefix) => {
      for (const [k, v] of Object.entries(o)) {
        const key = prefix ? `${prefix}.${k}` : k;
        if (!prefix && p.field_methods && p.field_methods[k] && !p.field_methods[k].includes(method())) continue;
        if (v && typeof v === 'object' && !Array.isArray(v)) walk(v, key);
        else out.set(key, v);
      }
    };
    walk(p.fields, '');
    return out;
  }
  const atDefault = (f) => f.input.value === (f.input.tagName === 'SELECT' ? f.def ?? '' : '');
  const resetControl = (f) => { f.input.value = f.input.tagName === 'SELECT' ? f.def ?? '' : ''; };

  /** Write the chosen preset's values into the controls they belong to:
   *  all of them when the choice changed; otherwise only controls the user
   *  has not touched (still showing the preset's value, or their default
   *  where the preset newly applies, e.g. the learning rates on a switch
   *  back to aflora). Values the preset no longer sets are cleared where
   *  untouched, so nothing stale is sent as an override. */
  function syncPreset() {
    const pc = controls.get('preset');
    if (!pc || !pc.s['x-presets']) return;       // a daemon whose schema lists no values: a text field
    const chosen = applies(pc) ? pc.input.value : '';
    const changed = chosen !== presetApplied;
    presetApplied = chosen;
    const wants = presetWants(chosen);
    for (const [name, shown] of [...presetShown]) {
      if (wants.has(name)) continue;
      const f = controls.get(name);
      if (f && f.input.value === shown) resetControl(f);
      presetShown.delete(name);
    }
    for (const [name, v] of wants) {
      const f = controls.get(name);
      if (!f || !f.input || !('value' in f.input)) continue;
      const text = show(v);
      const untouched = presetShown.has(name) ? f.input.value === presetShown.get(name) : atDefault(f);
      if (changed || untouched) f.input.value = text;
      presetShown.set(name, text);
    }
    describePreset(chosen, wants);
  }

  /** What the preset sets, as a list under the select (examples per step
   *  spelled out: batch_size x grad_accum). */
  function describePreset(name, wants) {
    if (!name) { fill(presetValues); presetValues.hidden = true; return; }
    presetValues.hidden = false;
    const items = [...wants].map(([k, v]) => {
      const f = controls.get(k);
      const mine = f && f.input && presetShown.has(k) && f.input.value !== presetShown.get(k) ? f.input.value.trim() : '';
      return h('li', { dataset: { field: k }, class: mine ? 'overridden' : null },
        `${labelOf(k)}: ${show(v)}${mine ? ` (overridden: ${mine})` : ''}`);
    });
    if (wants.has('batch_size') && wants.has('grad_accum')) {
      const b = wants.get('batch_size'); const a = wants.get('grad_accum');
      items.push(h('li', { dataset: { field: 'examples_per_step' } }, `Examples per step: ${b * a} (${b} × ${a})`));
    }
    const p = controls.get('preset').s['x-presets'][name];
    const methodOnly = Object.entries(p.field_methods || {}).filter(([, ms]) => !ms.includes(method())).map(([k, ms]) => `${labelOf(k).toLowerCase()} (${ms.join(', ')} only)`);
    if (methodOnly.length) items.push(h('li', { class: 'muted' }, `Not set for ${METHOD_TEXT[method()] || method()}: ${methodOnly.join(', ')}.`));
    fill(presetValues, h('li', { class: 'preset-head' }, `${name} sets (change any field to override it):`), items);
  }

  function update() {
    if (!schema) return;
    const demo = isDemo();
    if (dataFields) {
      dataFields.closest('fieldset').classList.toggle('demo', demo);
      dataFields.hidden = demo;
      dataDemoNote.hidden = !demo;
    }
    const mi = selectedModel();
    followModel(mi);
    syncPreset();
    followModel(mi);       // the preset may have changed the task (and so the metrics offered)
    const causal = currentTask() === 'causal_lm';
    if (freezeBox) freezeBox.hidden = !!freezeMethods && !freezeMethods.includes(method());
    if (lmBox) lmBox.hidden = !causal;
    for (const f of controls.values()) {
      if (f.methods || f.tasks) f.wrap.hidden = !applies(f);
      if (f.refresh) f.refresh();
    }
    if (causal) describeLm(mi);
    fill(modelInfo, mi ? [mi.architecture, mi.dtype, mi.layers !== null ? `${mi.layers} layers` : null, mi.hiddenSize !== null ? `hidden ${mi.hiddenSize}` : null,
      mi.parameters !== null ? `${fmtInt(mi.parameters)} parameters` : null, mi.vocabSize !== null ? `vocabulary ${fmtInt(mi.vocabSize)}` : null,
      mi.contextLength !== null ? `context ${fmtInt(mi.contextLength)}` : null,
      mi.tokenizer === null ? null : mi.tokenizer ? `tokenizer${mi.tokenizerKind ? ` (${mi.tokenizerKind})` : ''}` : 'no tokenizer'].filter(Boolean).join(' · ') : '',
    mi && mi.trainMemoryBytes !== null ? h('span', { id: 'model-memory', class: 'block' },
      `Training at the default settings needs about ${fmtBytes(mi.trainMemoryBytes)}${mi.trainMemoryNote ? ` (${mi.trainMemoryNote})` : ''}.`) : null);
    const { spec } = buildSpec();
    preview.textContent = JSON.stringify(spec, null, 2);
    const token = getToken() ? ' \\\n  -H "Authorization: Bearer $AFLORAD_TOKEN"' : '';
    curlPre.textContent = `curl -X POST ${location.origin}/jobs${token} \\\n  -H 'Content-Type: application/json' \\\n  -d '${JSON.stringify(spec).replace(/'/g, "'\\''")}'`;
  }

  /** -> {spec, errors: Map(field -> message)} */
  function buildSpec() {
    const spec = {};
    const errors = new Map();
    const demo = isDemo();
    for (const [name, f] of controls) {
      if (!applies(f)) continue;
      if (name.startsWith('dataset.') && demo) continue;
      // still the preset's value: the daemon fills it from the preset
      if (presetShown.has(name) && f.input.value === presetShown.get(name)) continue;
      const r = f.get();
      if (r.error) errors.set(name, r.error);
      else if (!r.skip) setPath(spec, name, r.value);
    }
    if (spec.dataset) {
      // keep the dataset keys in a readable order: train, eval, then the rest
      const { train, eval: ev, ...rest } = spec.dataset;
      spec.dataset = { ...(train !== undefined ? { train } : {}), ...(ev !== undefined ? { eval: ev } : {}), ...rest };
    }
    // model first, like the README's examples
    const { model, ...others } = spec;
    return { spec: { ...(model !== undefined ? { model } : {}), ...others }, errors };
  }

  function clearErrors() {
    formError.hidden = true;
    for (const f of controls.values()) {
      f.errorEl.hidden = true;
      f.errorEl.textContent = '';
      if (f.input) f.input.removeAttribute('aria-invalid');
      f.wrap.classList.remove('invalid');
    }
  }

  /** Show msg next to the control for a dotted field path (closest ancestor that has one). */
  function showFieldError(field, msg) {
    let name = field ? field.replace(/\[\d+\]/g, '') : '';
    while (name && !controls.has(name)) name = name.includes('.') ? name.slice(0, name.lastIndexOf('.')) : '';
    const f = name ? controls.get(name) : null;
    if (!f || f.wrap.hidden || f.wrap.closest('[hidden]')) {
      formError.hidden = false;
      fill(formError, field ? h('code', null, field) : null, field ? ': ' : null, msg);
      return formError;
    }
    f.errorEl.hidden = false;
    f.errorEl.textContent = msg;
    f.wrap.classList.add('invalid');
    if (f.input) f.input.setAttribute('aria-invalid', 'true');
    return f.input || f.wrap;
  }

  async function onSubmit(e) {
    e.preventDefault();
    if (!schema) return;
    clearErrors();
    const { spec, errors } = buildSpec();
    if (errors.size) {
      let first = null;
      for (const [field, msg] of errors) { const el = showFieldError(field, msg); first ||= el; }
      if (first && first.focus) first.focus();
      return;
    }
    submit.disabled = true;
    submit.textContent = 'Submitting…';
    try {
      const job = await api.createJob(spec);
      location.hash = `#/jobs/${job.id}`;
    } catch (err) {
      const el = showFieldError(err.field, err.message);
      if (el && el.focus) { if (el === formError) el.tabIndex = -1; el.focus(); }
    } finally {
      submit.disabled = false;
      submit.textContent = 'Start training';
    }
  }

  async function loadDatasets() {
    try { datasets = await api.datasets(); } catch { datasets = []; }
    if (disposed) return;
    for (const n of ['dataset.train', 'dataset.eval']) if (controls.get(n)) controls.get(n).fill();
  }

  (async () => {
    const problems = [];
    const [sch, ms, jobs] = await Promise.all([
      api.specSchema().catch((e) => { problems.push(`Cannot read the job spec: ${e.message}`); return null; }),
      api.models().catch((e) => { problems.push(`Cannot list models: ${e.message}`); return []; }),
      api.jobs({ status: 'succeeded', limit: 100 }).catch(() => ({ jobs: [] })),
    ]);
    if (disposed) return;
    if (problems.length) {
      formError.hidden = false;
      formError.textContent = problems.join(' ');
    }
    if (!sch) { fill(form); return; }
    schema = sch;
    models = ms;
    finished = jobs.jobs;
    build();
    controls.get('model')?.fill();
    controls.get('init_adapter')?.fill();
    await loadDatasets();
    update();
  })();
  window.addEventListener('aflorad:token', update);
  return () => {
    disposed = true;
    window.removeEventListener('aflorad:token', update);
  };
}
