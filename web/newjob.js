// newjob.js — the "new job" form.
//
// The form writes the same JSON job spec a user would POST with curl, and
// shows it (and the curl command) live, so the form teaches the API. Only
// fields the user changed go into the spec; every other field shows its
// default as a placeholder (defaults that depend on other fields, such as
// rank on method or the freezing phases on epochs, are worked out the way
// the daemon's spec table documents them). Fields that do not apply to the
// chosen method are hidden and left out, because the daemon rejects them.
//
// Validation is the daemon's: a 4xx answer's error.field (a dotted path
// such as "freeze.delta_t" or "dataset.text_fields[1]") is matched to the
// form control carrying that data-field, and the message appears beside it.
// The only checks made here are those the JSON cannot express (a number
// field that is not a number, no training data chosen).
import { h, clear, fill, fmtInt, uid } from './util.js';
import { api, MODULES, getToken } from './api.js';

// Defaults as documented by the daemon's spec table (daemon/spec.c).
const RANK_DEFAULT = { aflora: 4, elora: 1024, lora: 8 };
const SHORT_RUN_EPOCHS = 10;

/** Number fields: [name, label, int?, default text, methods or null (all), help] */
const TRAINING_FIELDS = [
  ['epochs', 'Epochs', true, '20', null, 'Passes over the training data.'],
  ['batch_size', 'Batch size', true, '32', null, 'Examples per micro-batch.'],
  ['grad_accum', 'Gradient accumulation', true, '1', null, 'Micro-batches per optimiser step.'],
  ['max_seq_len', 'Max sequence length', true, '128', null, 'Tokens per example; longer inputs are truncated.'],
  ['learning_rate', 'Learning rate', false, '0.01', null, 'AdamW learning rate of the adapter (use ~2e-5 for full).'],
  ['head_learning_rate', 'Head learning rate', false, '0.04', null, 'Learning rate of the task head.'],
  ['weight_decay', 'Weight decay', false, '0.1', null, 'AdamW decoupled weight decay.'],
  ['warmup_ratio', 'Warm-up ratio', false, '0.06', null, 'Fraction of steps of linear LR warm-up.'],
  ['max_grad_norm', 'Max gradient norm', false, '0.1', null, 'Clip to this global norm; 0 turns clipping off.'],
  ['seed', 'Seed', true, '42', null, 'Same spec and seed, same run.'],
  ['threads', 'Threads', true, '0', null, 'Compute threads for this job; 0 = one per core.'],
];
const FREEZE_FIELDS = [
  ['freeze.initial_warmup_epochs', 'Initial warm-up (epochs)', false, null, ['aflora'], 'Epochs before any projection may freeze.'],
  ['freeze.final_warmup_epochs', 'Final phase (epochs)', false, null, ['aflora'], 'Epochs at the end with everything frozen.'],
  ['freeze.delta_t', 'Δt (steps per window)', true, '10', ['aflora'], 'Scoring window; freezing decisions every Δt steps.'],
  ['freeze.beta1', 'β1 (sensitivity smoothing)', false, '0.85', ['aflora'], 'EMA factor of the smoothed sensitivity.'],
  ['freeze.beta2', 'β2 (uncertainty smoothing)', false, '0.95', ['aflora'], 'EMA factor of the uncertainty.'],
];

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

export function renderNewJob(root) {
  let disposed = false;
  let models = [];
  let datasets = [];
  const controls = new Map();      // field name -> {wrap, input, errorEl, get(), methods}

  const heading = h('h2', { tabindex: -1, id: 'newjob-title' }, 'New job');
  const formError = h('div', { class: 'error-box', role: 'alert', hidden: true, id: 'form-error' });
  const form = h('form', { id: 'new-job-form', novalidate: true, 'aria-labelledby': 'newjob-title' });
  const preview = h('pre', { class: 'code', id: 'spec-preview', 'aria-live': 'off' });
  const curlPre = h('pre', { class: 'code', id: 'curl-preview' });
  const submit = h('button', { type: 'submit', class: 'primary', id: 'submit-job' }, 'Start training');

  // ---- field helpers ---------------------------------------------------------------
  function fieldWrap(name, label, input, help, methods) {
    const errId = uid('err');
    const helpId = help ? uid('help') : null;
    input.id ||= uid('f');
    input.setAttribute('aria-describedby', [helpId, errId].filter(Boolean).join(' '));
    const errorEl = h('p', { class: 'field-error', id: errId, hidden: true });
    const wrap = h('div', { class: 'field', dataset: { field: name } },
      h('label', { for: input.id }, label), input,
      help ? h('p', { class: 'help', id: helpId }, help) : null, errorEl);
    return { wrap, errorEl, methods };
  }

  function numberField([name, label, isInt, def, methods, help]) {
    const input = h('input', { type: 'text', inputmode: isInt ? 'numeric' : 'decimal', name, autocomplete: 'off', placeholder: def ?? '' });
    const f = fieldWrap(name, label, input, help, methods);
    f.input = input;
    f.get = () => {
      const t = input.value.trim();
      if (!t) return { skip: true };
      const v = Number(t);
      if (!Number.isFinite(v)) return { error: `"${t}" is not a number` };
      return { value: v };
    };
    input.addEventListener('input', update);
    controls.set(name, f);
    return f.wrap;
  }

  function selectField(name, label, options, def, help, methods) {
    const input = h('select', { name }, options.map(([v, t]) => h('option', { value: v }, t)));
    input.value = def;
    const f = fieldWrap(name, label, input, help, methods);
    f.input = input;
    f.get = () => (input.value === def ? { skip: true } : { value: input.value });
    input.addEventListener('change', update);
    controls.set(name, f);
    return f.wrap;
  }

  function checkField(name, label, def, help) {
    const input = h('input', { type: 'checkbox', name });
    input.checked = def;
    const errId = uid('err');
    const errorEl = h('p', { class: 'field-error', id: errId, hidden: true });
    input.setAttribute('aria-describedby', errId);
    const wrap = h('div', { class: 'field check', dataset: { field: name } },
      h('label', null, input, ` ${label}`), help ? h('p', { class: 'help' }, help) : null, errorEl);
    controls.set(name, { wrap, input, errorEl, get: () => (input.checked === def ? { skip: true } : { value: input.checked }) });
    input.addEventListener('change', update);
    return wrap;
  }

  function textField(name, label, placeholder, help, parse) {
    const input = h('input', { type: 'text', name, placeholder, autocomplete: 'off' });
    const f = fieldWrap(name, label, input, help, null);
    f.input = input;
    f.get = () => (input.value.trim() ? { value: parse(input.value) } : { skip: true });
    input.addEventListener('input', update);
    controls.set(name, f);
    return f.wrap;
  }

  // ---- model --------------------------------------------------------------------
  // GET /models lists "demo" and every folder of the daemon's models
  // directory; the API accepts no other model (no server paths).
  const modelSelect = h('select', { name: 'model', id: 'model' });
  const modelInfo = h('p', { class: 'help', id: 'model-info' });
  const modelF = fieldWrap('model', 'Base model', modelSelect, null, null);
  modelF.wrap.append(modelInfo);
  modelF.input = modelSelect;
  modelF.get = () => (modelSelect.value ? { value: modelSelect.value } : { error: 'choose a model' });
  controls.set('model', modelF);
  modelSelect.addEventListener('change', update);

  // ---- data ---------------------------------------------------------------------
  // Over the API a job names uploaded datasets by id (server paths are refused).
  function datasetPicker(name, label, optional) {
    const sel = h('select', { name });
    const f = fieldWrap(name, label, sel, null, null);
    f.input = sel;
    f.fill = () => {
      const keep = sel.value;
      fill(sel,
        h('option', { value: '' }, optional ? '— none —' : '— choose —'),
        datasets.map((d) => h('option', { value: d.id }, `${d.name} · ${d.rows !== null ? `${fmtInt(d.rows)} rows` : d.format} · ${d.id}`)));
      sel.value = [...sel.options].some((o) => o.value === keep) ? keep : '';
    };
    f.get = () => {
      if (sel.value) return { value: sel.value };
      return optional ? { skip: true } : { error: 'choose a training file (upload one first)' };
    };
    sel.addEventListener('change', update);
    controls.set(name, f);
    return f;
  }
  const trainF = datasetPicker('dataset.train', 'Training data', false);
  const evalF = datasetPicker('dataset.eval', 'Evaluation data (optional)', true);
  const upload = h('input', { type: 'file', id: 'dataset-upload', accept: '.tsv,.csv,.jsonl,.json,text/tab-separated-values,text/csv' });
  const uploadStatus = h('p', { class: 'help', 'aria-live': 'polite', id: 'upload-status' });
  const uploadErr = h('p', { class: 'field-error', hidden: true });
  upload.addEventListener('change', async () => {
    const file = upload.files && upload.files[0];
    if (!file) return;
    uploadErr.hidden = true;
    uploadStatus.textContent = `Uploading ${file.name} (${fmtInt(file.size)} bytes)…`;
    try {
      const d = await api.uploadDataset(file);
      await loadDatasets();
      if (!trainF.input.value) trainF.input.value = d.id;
      else if (!evalF.input.value) evalF.input.value = d.id;
      uploadStatus.textContent = `Uploaded ${d.name}: ${d.rows !== null ? `${fmtInt(d.rows)} rows, ` : ''}id ${d.id}.`;
      upload.value = '';
      update();
    } catch (e) {
      uploadStatus.textContent = '';
      uploadErr.hidden = false;
      uploadErr.textContent = `Upload failed: ${e.message}`;
    }
  });
  const dataDemoNote = h('p', { class: 'note' }, 'The demo model trains on its own built-in synthetic sentiment data; a spec for it names no dataset.');
  const dataFields = h('div', { class: 'grid' },
    trainF.wrap, evalF.wrap,
    h('div', { class: 'field', dataset: { field: 'upload' } }, h('label', { for: 'dataset-upload' }, 'Upload a data file (TSV, CSV or JSONL)'), upload, uploadStatus, uploadErr),
    selectField('dataset.format', 'Format', [['auto', 'auto (by extension)'], ['tsv', 'TSV'], ['csv', 'CSV'], ['jsonl', 'JSON Lines']], 'auto', null),
    textField('dataset.text_fields', 'Text field(s)', 'sentence', 'Column names or 0-based indices; two for sentence pairs ("sentence1, sentence2").',
      (s) => s.split(',').map(parseColumn).filter((x) => x !== '')),
    textField('dataset.label_field', 'Label field', 'label', 'Column name or 0-based index.', parseColumn),
    textField('dataset.labels', 'Label names (optional)', 'in first-seen order', 'Comma-separated, in class-id order.', (s) => s.split(',').map((x) => x.trim()).filter(Boolean)),
    checkField('dataset.has_header', 'First row is a header (TSV/CSV)', true, null));

  // ---- method -------------------------------------------------------------------
  const methodBox = h('fieldset', { class: 'segmented', id: 'method' }, h('legend', null, 'Method'));
  const METHOD_TEXT = { aflora: 'AFLoRA', elora: 'ELoRA', lora: 'LoRA', full: 'Full fine-tuning' };
  for (const m of Object.keys(METHOD_TEXT)) {
    const r = h('input', { type: 'radio', name: 'method', value: m, id: `method-${m}` });
    r.checked = m === 'aflora';
    r.addEventListener('change', update);
    methodBox.append(h('label', { for: r.id }, r, h('span', null, METHOD_TEXT[m])));
  }
  const methodErr = h('p', { class: 'field-error', hidden: true });
  const methodWrap = h('div', { class: 'field', dataset: { field: 'method' } }, methodBox, methodErr,
    h('p', { class: 'help', id: 'method-help' }));
  const method = () => methodBox.querySelector('input:checked').value;
  controls.set('method', { wrap: methodWrap, input: methodBox.querySelector('input'), errorEl: methodErr, get: () => (method() === 'aflora' ? { skip: true } : { value: method() }) });

  const modulesBox = h('fieldset', { class: 'checks' }, h('legend', null, 'Target modules'));
  for (const m of MODULES) {
    const c = h('input', { type: 'checkbox', value: m.name });
    c.checked = true;
    c.addEventListener('change', update);
    modulesBox.append(h('label', null, c, ` ${m.name}`));
  }
  const modulesErr = h('p', { class: 'field-error', hidden: true });
  const modulesWrap = h('div', { class: 'field', dataset: { field: 'target_modules' } }, modulesBox, modulesErr);
  controls.set('target_modules', {
    wrap: modulesWrap, input: modulesBox.querySelector('input'), errorEl: modulesErr, methods: ['aflora', 'elora', 'lora'],
    get: () => {
      const on = [...modulesBox.querySelectorAll('input')].filter((c) => c.checked).map((c) => c.value);
      if (!on.length) return { error: 'choose at least one module' };
      return on.length === MODULES.length ? { skip: true } : { value: on };
    },
  });

  const methodFields = h('div', { class: 'grid' },
    numberField(['rank', 'Rank r', true, '4', ['aflora', 'elora', 'lora'], 'Adapter rank.']),
    numberField(['alpha', 'LoRA alpha', false, '16', ['lora'], 'Update scaled by alpha / rank.']),
    selectField('trainable_projections', 'Trainable projections', [['ffn', 'ffn — FFN A/B train and freeze (authors\' code)'], ['all', 'all — every A/B starts trainable'], ['none', 'none — A/B frozen from the start']], 'ffn',
      'Whose A and B start trainable.', ['aflora']),
    modulesWrap);

  // ---- the rest -----------------------------------------------------------------
  const taskFields = h('div', { class: 'grid' },
    modelF.wrap,
    selectField('task', 'Task', [['classification', 'classification'], ['regression', 'regression']], 'classification', null),
    numberField(['num_labels', 'Number of labels', true, 'from the data', null, 'Outputs of the head (1 for regression).']));
  const freezeBox = h('fieldset', { class: 'group', id: 'freeze-group' }, h('legend', null, 'Adaptive freezing (AFLoRA)'),
    h('p', { class: 'help' }, 'The cubic schedule keeps every projection trainable during the initial warm-up, freezes the least sensitive ones every Δt steps in between, and freezes what is left at the start of the final phase.'),
    h('div', { class: 'grid' }, FREEZE_FIELDS.map(numberField)));
  const trainBox = h('fieldset', { class: 'group' }, h('legend', null, 'Training'),
    h('div', { class: 'grid' }, TRAINING_FIELDS.map(numberField), checkField('dropout', 'Dropout (the base model\'s)', true, null)));
  const dataBox = h('fieldset', { class: 'group', id: 'data-group' }, h('legend', null, 'Data'), dataDemoNote, dataFields);

  form.append(
    h('fieldset', { class: 'group' }, h('legend', null, 'Model and task'), taskFields),
    dataBox,
    h('fieldset', { class: 'group' }, h('legend', null, 'Adapter'), methodWrap, methodFields),
    freezeBox, trainBox,
    h('div', { class: 'form-actions' }, submit, h('button', { type: 'reset', class: 'secondary' }, 'Reset')));
  form.addEventListener('reset', () => setTimeout(update, 0));
  form.addEventListener('submit', onSubmit);

  root.append(h('section', { class: 'newjob' },
    h('div', { class: 'title-row' }, heading),
    formError,
    h('div', { class: 'newjob-layout' }, form,
      h('aside', { class: 'spec-aside', 'aria-label': 'The resulting job spec' },
        h('h3', null, 'Job spec'), h('p', { class: 'help' }, 'What the form sends: POST /jobs with this JSON.'), preview,
        h('h3', null, 'Same with curl'), curlPre))));
  heading.focus();

  // ---- behaviour ---------------------------------------------------------------------
  function applies(f) {
    return !f.methods || f.methods.includes(method());
  }

  function isDemo() {
    const m = modelF.get();
    return m.value === 'demo';
  }

  function update() {
    const m = method();
    const demo = isDemo();
    dataBox.classList.toggle('demo', demo);
    dataFields.hidden = demo;
    dataDemoNote.hidden = !demo;
    freezeBox.hidden = m !== 'aflora';
    for (const f of controls.values()) if (f.methods) f.wrap.hidden = !applies(f);
    // dependent defaults as placeholders
    const rankIn = controls.get('rank').input;
    rankIn.placeholder = RANK_DEFAULT[m] ? String(RANK_DEFAULT[m]) : '';
    const rank = Number(rankIn.value) || RANK_DEFAULT[m] || 0;
    controls.get('alpha').input.placeholder = `${2 * rank} (2 × rank)`;
    const ep = Number(controls.get('epochs').input.value) || 20;
    controls.get('freeze.initial_warmup_epochs').input.placeholder = String(ep < SHORT_RUN_EPOCHS ? Number((0.1 * ep).toFixed(4)) : 1);
    controls.get('freeze.final_warmup_epochs').input.placeholder = String(Number((0.7 * ep).toFixed(4)));
    document.getElementById('method-help').textContent = {
      aflora: 'Low-rank A and B (r = 4) that freeze adaptively, plus trainable vectors s_d and s_b.',
      elora: 'Frozen random A and B (r = 1024), trainable vectors only.',
      lora: 'Trainable A and B scaled by alpha / r; nothing freezes.',
      full: 'Every base weight trains (no adapter); use a small learning rate such as 2e-5.',
    }[m];
    const mi = models.find((x) => x.name === modelF.get().value);
    modelInfo.textContent = mi ? [mi.architecture, mi.layers !== null ? `${mi.layers} layers` : null, mi.hiddenSize !== null ? `hidden ${mi.hiddenSize}` : null,
      mi.parameters !== null ? `${fmtInt(mi.parameters)} parameters` : null].filter(Boolean).join(' · ') : '';
    const { spec } = buildSpec();
    const json = JSON.stringify(spec, null, 2);
    preview.textContent = json;
    const token = getToken() ? ' \\\n  -H "Authorization: Bearer $AFLORAD_TOKEN"' : '';
    curlPre.textContent = `curl -X POST ${location.origin}/jobs${token} \\\n  -H 'Content-Type: application/json' \\\n  -d '${JSON.stringify(spec).replace(/'/g, "'\\''")}'`;
  }

  /** -> {spec, errors: Map(field -> message)} */
  function buildSpec() {
    const spec = {};
    const errors = new Map();
    const demo = isDemo();
    for (const [name, f] of controls) {
      if (f.methods && !applies(f)) continue;
      if (name.startsWith('freeze.') && method() !== 'aflora') continue;
      if (name.startsWith('dataset.') && demo) continue;
      if (name === 'rank' && method() === 'full') continue;
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
    trainF.fill();
    evalF.fill();
  }

  (async () => {
    try {
      models = await api.models();
    } catch (e) {
      formError.hidden = false;
      formError.textContent = `Cannot list models: ${e.message}`;
      models = [];
    }
    if (disposed) return;
    fill(modelSelect, models.map((m) => h('option', { value: m.name, disabled: !m.usable },
      m.usable ? m.name : `${m.name} (unusable: ${m.reason || 'see the daemon log'})`)));
    const first = models.find((m) => m.usable);
    modelSelect.value = models.some((m) => m.name === 'demo' && m.usable) ? 'demo' : first ? first.name : '';
    await loadDatasets();
    update();
  })();
  update();
  window.addEventListener('aflorad:token', update);
  return () => {
    disposed = true;
    window.removeEventListener('aflorad:token', update);
  };
}
