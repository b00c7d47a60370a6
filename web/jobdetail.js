// jobdetail.js — one job, live: status and actions, charts, the freezing
// heatmap and its schedule, FLOPs and trainable parameters.
//
// Data flow: GET /jobs/{id} for the header (and again on every status
// event, and every few seconds while the job is live), then the job's SSE
// stream from its first event: `step` events append to column arrays (one
// array per plotted quantity, indexed like `xs`), `freeze` events fill
// heatmap cells at once, `eval` events add an epoch. GET /jobs/{id}/freezing
// is read when the page opens and again when the job ends, and its steps
// are written into the heatmap too, so what the heatmap shows is exactly
// what the API reports. Charts re-render at most a few times a second.
//
// FLOPs saved by freezing are an estimate, not a measurement: the job where
// nothing froze is not run. Every step that job would have spent the
// weight-gradient FLOPs of this job's first step (when every trainable
// matrix still trained), scaled by this step's forward FLOPs over the first
// step's (so a short last batch or shorter sequences are not counted as
// savings); the saving of a step is that minus the weight-gradient FLOPs it
// really spent, and the figure shown is the sum over steps.
import { h, clear, fill, fmtInt, fmtNum, fmtFlops, fmtPercent, fmtTime, fmtDuration, throttle, infoTip } from './util.js';
import { api, TERMINAL, startsTrainable, heatmapRows, ApiError, getToken, bestOfEvals } from './api.js';
import { followJobEvents } from './events.js';
import { LineChart, smooth, PALETTE } from './charts.js';
import { FreezeHeatmap } from './heatmap.js';
import { statusBadge } from './jobs.js';
import { renderPlayground } from './playground.js';

const POLL_LIVE_MS = 4000;           // header refresh while the stream is up
const POLL_FALLBACK_MS = 1500;       // when the stream cannot be opened
const RENDER_EVERY_MS = 250;         // charts at most 4 times a second
const LOG_KEEP = 300;                // log lines kept on the page

export const SAVED_FLOPS_HELP =
  'Estimate. The same job with nothing frozen would spend, every step, the weight-gradient FLOPs of ' +
  'this job\'s first step (when every trainable matrix still trained), scaled by the step\'s forward ' +
  'FLOPs relative to the first step\'s (so smaller batches are not counted as savings). Saved = that ' +
  'baseline minus the weight-gradient FLOPs the step really spent, summed over steps. Forward and ' +
  'input-gradient FLOPs do not change when A and B freeze (the vectors s_d, s_b keep training), so ' +
  'they are not part of the saving. Percent: of the baseline job\'s total training FLOPs.';

const TRAINABLE_AVG_HELP =
  'The paper reports trainable parameters averaged over all training steps, because the count ' +
  'drops as matrices freeze. This is that time average (including the task head).';

function newSeries() {
  return {
    xs: [], loss: [], lr: [], fF: [], fBI: [], fBW: [], cF: [], cBI: [], cBW: [],
    savedStep: [], savedCum: [], tNow: [], tAvg: [], projTrain: [], r: [], elapsed: [],
    tps: [], tokensSeen: [],
    base: null,
  };
}

export function renderJobDetail(root, id) {
  let job = null;
  let stream = null;
  let pollTimer = null;
  let disposed = false;
  let models = null;
  let freezing = null;
  const S = newSeries();
  const evals = [];
  const freezes = new Map();           // cellKey -> {layer, module, matrix, step, score}
  const logs = [];
  let connection = 'connecting';
  let playground = null;
  const isCausal = () => !!(job && job.spec && job.spec.task === 'causal_lm');

  // ---- skeleton ---------------------------------------------------------------
  const title = h('h2', { tabindex: -1 }, 'Job ', h('code', null, id));
  const badgeHost = h('span', { class: 'badge-host' });
  const actions = h('div', { class: 'actions' });
  const meta = h('dl', { class: 'meta' });
  const errorBox = h('div', { class: 'error-box', role: 'alert', hidden: true });
  const progress = h('div', { class: 'progress-wrap' });
  const stats = h('div', { class: 'stats' });
  const connEl = h('span', { class: 'conn muted', 'aria-live': 'polite' });

  const panel = (heading, help, ...body) => h('section', { class: 'panel' },
    h('h3', null, heading, help ? infoTip(help) : null), ...body);

  const lossHost = h('div', { id: 'chart-loss' });
  const lrHost = h('div', { id: 'chart-lr' });
  const evalHost = h('div', { id: 'chart-eval' });
  const evalTable = h('div', { class: 'eval-table' });
  const heatHost = h('div', { id: 'heatmap' });
  const heatNote = h('p', { class: 'muted note' });
  const schedHost = h('div', { id: 'chart-schedule' });
  const flopsStepHost = h('div', { id: 'chart-flops-step' });
  const flopsCumHost = h('div', { id: 'chart-flops-cum' });
  const paramsHost = h('div', { id: 'chart-params' });
  const logList = h('ul', { class: 'log', 'aria-label': 'Job log' });
  const pplHost = h('div', { id: 'chart-perplexity' });
  const tpsHost = h('div', { id: 'chart-tokens' });
  const playHost = h('div', { id: 'playground-host' });
  const specPre = h('pre', { class: 'code' });

  const heatPanel = panel('Freezing heatmap (Figure 5)',
    'Each cell is one adapter projection matrix (A: down-projection, B: up-projection) of one layer (the rows are the modules this job adapts), coloured by the optimisation step at which AFLoRA froze it. Cells fill in as freeze events arrive.',
    heatNote, heatHost);
  const schedPanel = panel('Freezing schedule',
    'r(t): the fraction of trainable projections the cubic schedule allows at step t (1 during the initial warm-up, 0 in the final phase). The second line counts the A and B matrices still training.',
    schedHost);

  const pplPanel = panel('Perplexity',
    'exp(loss): the training loss of every step, smoothed (exponential moving average, weight 0.9), and the evaluation set\'s perplexity after each epoch (markers).',
    pplHost);
  const tpsPanel = panel('Tokens per second',
    'Training throughput of every step as the daemon reports it (tokens_per_second); the total seen so far is in the figures above.', tpsHost);
  const playPanel = h('section', { class: 'panel wide', id: 'playground', 'aria-labelledby': 'playground-title' },
    h('h3', { id: 'playground-title' }, 'Playground: base model vs fine-tuned'), playHost);
  pplPanel.hidden = true;
  tpsPanel.hidden = true;
  playPanel.hidden = true;
  const section = h('section', { class: 'job-detail', 'aria-labelledby': 'job-title' });
  root.append(section);
  section.append(
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/' }, 'Jobs'), ' / ', h('span', null, id)),
    h('header', { class: 'detail-head' }, h('div', { class: 'title-row' }, title, badgeHost, connEl), actions),
    errorBox, meta, progress, stats,
    h('div', { class: 'panels' },
      panel('Training loss', 'Loss of every optimisation step (thin line) and its exponential moving average (weight 0.9, bias-corrected).', lossHost),
      pplPanel, tpsPanel,
      panel('Learning rate', null, lrHost),
      playPanel,
      heatPanel, schedPanel,
      panel('FLOPs per step', 'What the engine executed in each optimisation step, by kind. Freezing A and B removes their weight-gradient GEMMs.', flopsStepHost),
      panel('Cumulative FLOPs', SAVED_FLOPS_HELP, flopsCumHost),
      panel('Trainable parameters', TRAINABLE_AVG_HELP, paramsHost),
      panel('Evaluation per epoch', null, evalHost, evalTable),
      panel('Log', null, logList),
      h('section', { class: 'panel wide' }, h('details', null, h('summary', null, 'Job spec (JSON)'), specPre))));
  title.id = 'job-title';
  title.focus();

  const charts = {
    loss: new LineChart(lossHost, { title: 'Training loss', xLabel: 'step', yLabel: 'loss' }),
    lr: new LineChart(lrHost, { title: 'Learning rate', xLabel: 'step', yLabel: 'learning rate', includeZero: true, height: 160 }),
    evalc: new LineChart(evalHost, { title: 'Evaluation metrics', xLabel: 'epoch', yLabel: 'metric', y2Label: 'eval loss', xFormat: (x) => String(Math.round(x)), height: 200 }),
    sched: new LineChart(schedHost, { title: 'Freezing schedule', xLabel: 'step', yLabel: 'r(t)', y2Label: 'matrices training', includeZero: true, y2IncludeZero: true, y2Format: (v) => fmtInt(v) }),
    flopsStep: new LineChart(flopsStepHost, { title: 'FLOPs per step', xLabel: 'step', yLabel: 'FLOP per step', yFormat: fmtFlops, includeZero: true }),
    flopsCum: new LineChart(flopsCumHost, { title: 'Cumulative FLOPs', xLabel: 'step', yLabel: 'FLOP', yFormat: fmtFlops, includeZero: true }),
    ppl: new LineChart(pplHost, { title: 'Perplexity', xLabel: 'step', yLabel: 'perplexity' }),
    tps: new LineChart(tpsHost, { title: 'Tokens per second', xLabel: 'step', yLabel: 'tokens/s', includeZero: true, height: 180 }),
    params: new LineChart(paramsHost, { title: 'Trainable parameters', xLabel: 'step', yLabel: 'parameters', yFormat: (v) => fmtNum(v, 3), includeZero: true }),
  };
  const heatmap = new FreezeHeatmap(heatHost);

  // ---- header -------------------------------------------------------------------
  function renderHeader() {
    if (!job) return;
    fill(badgeHost, statusBadge(job.status));
    section.dataset.status = job.status;
    clear(actions);
    if (job.status === 'queued' || job.status === 'running') {
      const btn = h('button', { type: 'button', class: 'danger', id: 'cancel-job' }, 'Cancel job');
      btn.addEventListener('click', async () => {
        btn.disabled = true;
        btn.textContent = 'Cancelling…';
        try {
          await api.cancelJob(id);
          await refreshJob();
        } catch (e) {
          showError(`Cancel failed: ${e.message}`);
          btn.disabled = false;
          btn.textContent = 'Cancel job';
        }
      });
      actions.append(btn);
    }
    if (job.status === 'succeeded') {
      if (job.method !== 'full') actions.append(downloadLink(api.adapterUrl(id, 'peft.tar'), `${id}-peft.tar`, 'Download PEFT folder (.tar)', 'download-peft'));
      actions.append(downloadLink(api.adapterUrl(id, 'adapter.safetensors'), `${id}-adapter.safetensors`, 'Download native adapter', 'download-native'));
    }
    const dur = job.startedAt ? ((job.finishedAt || Date.now()) - job.startedAt) / 1000 : null;
    const pair = (k, v, idAttr) => h('div', { id: idAttr }, h('dt', null, k), h('dd', null, v));
    fill(meta,
      pair('Model', job.model),
      pair('Method', methodText(job.spec)),
      pair('Created', fmtTime(job.createdAt), 'meta-created'),
      pair('Started', fmtTime(job.startedAt), 'meta-started'),
      pair('Finished', fmtTime(job.finishedAt), 'meta-finished'),
      pair(job.finishedAt ? 'Took' : job.startedAt ? 'Running for' : 'Waiting', dur !== null ? fmtDuration(dur) : '—'));
    if (job.error && job.status !== 'succeeded') {
      errorBox.hidden = false;
      fill(errorBox, h('strong', null, job.status === 'cancelled' ? 'Cancelled: ' : 'Error: '), job.error);
    } else if (!errorBox.dataset.local) errorBox.hidden = true;
    specPre.textContent = JSON.stringify(job.spec, null, 2);
    const causal = isCausal();
    pplPanel.hidden = !causal;
    tpsPanel.hidden = !causal;
    if (causal && job.status === 'succeeded' && !playground) {
      playPanel.hidden = false;
      playground = renderPlayground(playHost, { jobId: id, model: job.model });
    }
    if (playground && models) playground.setModel(models.find((x) => x.name === job.model) || null);
    configureHeatmap();
    renderProgress();
  }

  /** kind 'net': a failed refresh, cleared by the next one that works. */
  function showError(msg, kind = 'action') {
    errorBox.hidden = false;
    errorBox.dataset.local = kind;
    fill(errorBox, msg);
  }

  function downloadLink(url, name, text, idAttr) {
    const a = h('a', { class: 'button', href: url, download: name, id: idAttr }, text);
    a.addEventListener('click', async (e) => {
      if (!getToken()) return;   // plain link: the browser streams it
      e.preventDefault();                                        // token: fetch with the header
      try {
        const blob = await api.download(url);
        const obj = URL.createObjectURL(blob);
        const tmp = h('a', { href: obj, download: name });
        document.body.append(tmp);
        tmp.click();
        tmp.remove();
        setTimeout(() => URL.revokeObjectURL(obj), 10000);
      } catch (err) { showError(`Download failed: ${err.message}`); }
    });
    return a;
  }

  function renderProgress() {
    const last = S.xs.length ? S.xs[S.xs.length - 1] : null;
    const step = Math.max(job ? job.step : 0, last ?? 0);
    const total = (job && job.totalSteps) || lastStepInfo.totalSteps || null;
    const epoch = lastStepInfo.epoch ?? (job ? job.epoch : null);
    const epochs = job && job.spec ? job.spec.epochs : null;
    const frac = total ? step / total : 0;
    const el = S.elapsed.length ? S.elapsed[S.elapsed.length - 1] : null;
    const eta = el && step > 0 && total && job && job.status === 'running' ? (el / step) * (total - step) : null;
    fill(progress, 
      h('div', { class: 'progress-label' },
        h('span', { id: 'progress-steps' }, `step ${fmtInt(step)}${total ? ` of ${fmtInt(total)}` : ''}`),
        epoch ? h('span', null, ` · epoch ${epoch}${epochs ? ` of ${epochs}` : ''}`) : null,
        el !== null ? h('span', { class: 'muted' }, ` · ${fmtDuration(el)} of training`) : null,
        eta !== null ? h('span', { class: 'muted' }, ` · about ${fmtDuration(eta)} left`) : null),
      h('div', { class: 'progress', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': total || 1, 'aria-valuenow': step, 'aria-label': 'training progress' },
        h('div', { class: 'progress-fill', style: `width:${(Math.min(1, frac) * 100).toFixed(2)}%` })));
  }

  // ---- heatmap ------------------------------------------------------------------
  function layerCount() {
    if (freezing && freezing.layers) return freezing.layers;
    const m = models && job && models.find((x) => x.name === job.model);
    if (m && m.layers) return m.layers;
    let n = 0;
    for (const f of freezes.values()) n = Math.max(n, f.layer + 1);
    return n || null;
  }

  function configureHeatmap() {
    if (!job) return;
    const method = job.method;
    if (method === 'full') {
      heatPanel.hidden = true;
      schedPanel.hidden = true;
      return;
    }
    schedPanel.hidden = method !== 'aflora';
    // Rows: the modules this job adapts, as the freezing data describes them
    // (the model family's labels), the spec's names until it has answered.
    const model = models ? models.find((x) => x.name === job.model) : null;
    const rows = heatmapRows(job.spec, freezing, model);
    const ffn = rows.filter((r) => r.ffn).map((r) => r.label);
    heatNote.textContent = {
      aflora: (job.spec.trainable_projections || 'ffn') === 'ffn'
        ? `trainable_projections "ffn": only the feed-forward modules${ffn.length ? ` (${ffn.join(', ')})` : ''} start with trainable A and B; the attention projections are frozen from the start, as in the authors' code.`
        : `trainable_projections "${job.spec.trainable_projections}".`,
      elora: 'ELoRA: A and B are random and frozen from the start; only the vectors train.',
      lora: 'LoRA: A and B train to the end; nothing freezes.',
    }[method] || '';
    const layers = layerCount();
    if (!layers) { heatNote.textContent += ' Waiting for the model\'s layer count…'; return; }
    const byName = new Map(rows.map((r) => [r.name, r]));
    heatmap.configure({
      layers,
      modules: rows,
      isInitiallyTrainable: (mod) => startsTrainable(job.spec, byName.get(mod) || { ffn: null }),
      totalSteps: job.totalSteps || lastStepInfo.totalSteps,
      domain: heatDomain(),
    });
    for (const f of freezes.values()) heatmap.setStep(f.layer, f.module, f.matrix, f.step, f.score);
    heatmap.setFinished(TERMINAL.has(job.status));
  }

  function heatDomain() {
    const w = freezeWindow();
    return w ? [Math.floor(w.ti), Math.ceil(w.fs) + 1] : null;
  }

  function applyFreezing(fz) {
    freezing = fz;
    for (const [k, step] of fz.cells) {
      const [layer, module, matrix] = k.split('|');
      const prev = freezes.get(k);
      const score = fz.scores && fz.scores.has(k) ? fz.scores.get(k) : prev ? prev.score : null;
      if (step !== null && step > 0) freezes.set(k, { layer: Number(layer), module, matrix, step, score });
      else if (prev && TERMINAL.has(job && job.status)) freezes.delete(k);   // the API's final word
    }
    configureHeatmap();
    for (const [k, step] of fz.cells) {
      const [layer, module, matrix] = k.split('|');
      const f = freezes.get(k);
      heatmap.setStep(Number(layer), module, matrix, step !== null && step > 0 ? step : null, f ? f.score : null);
    }
    scheduleRender();
  }

  async function loadFreezing() {
    if (!job || job.method === 'full') return;
    try { applyFreezing(await api.freezing(id)); } catch (e) {
      if (!(e instanceof ApiError) || e.status !== 404) addLog(`freezing data: ${e.message}`);
    }
  }

  // ---- stats and charts -----------------------------------------------------------
  const lastStepInfo = { totalSteps: null, epoch: null, projTotal: null };

  function stat(label, value, sub, help, idAttr) {
    return h('div', { class: 'stat', id: idAttr },
      h('div', { class: 'stat-label' }, label, help ? infoTip(help) : null),
      h('div', { class: 'stat-value' }, value),
      sub ? h('div', { class: 'stat-sub muted' }, sub) : null);
  }

  function renderStats() {
    const n = S.xs.length;
    const lastLoss = n ? S.loss[n - 1] : job && job.loss;
    const best = bestEval();
    const tot = n ? S.cF[n - 1] + S.cBI[n - 1] + S.cBW[n - 1]
      : job ? (job.flops.forward || 0) + (job.flops.backward_input || 0) + (job.flops.backward_weight || 0) : null;
    const saved = n ? S.savedCum[n - 1] : null;
    const baseline = n ? tot + saved : null;
    const projT = n ? S.projTrain[n - 1] : null;
    const tNow = n ? S.tNow[n - 1] : job && job.trainableNow;
    const tAvg = n ? S.tAvg[n - 1] : job && job.trainableAvg;
    fill(stats, 
      stat('Latest loss', fmtNum(lastLoss), n > 1 ? `smoothed ${fmtNum(smooth(S.loss)[n - 1])}` : null, null, 'stat-loss'),
      stat(job && !TERMINAL.has(job.status) ? 'Best eval so far' : 'Best eval', best ? `${best.name} ${fmtNum(best.value)}` : '—',
        best ? `epoch ${best.epoch}` : bestMissing(), null, 'stat-best'),
      isCausal() ? stat('Tokens per second', fmtNum(n ? S.tps[n - 1] : null),
        n && S.tokensSeen[n - 1] !== null ? `${fmtInt(S.tokensSeen[n - 1])} tokens seen` : null, null, 'stat-tokens') : null,
      isCausal() ? stat('Perplexity', fmtNum(lastPpl()), lastEvalPpl() !== null ? `eval ${fmtNum(lastEvalPpl())}` : 'exp(smoothed training loss)', null, 'stat-perplexity') : null,
      stat('Trainable now', fmtInt(tNow), `time average ${fmtInt(tAvg)}`, TRAINABLE_AVG_HELP, 'stat-trainable'),
      stat('Matrices training', projT !== null ? `${fmtInt(projT)} of ${fmtInt(S.projTrain[0])}` : job && job.freezable ? `${fmtInt(job.freezable - job.frozen)} of ${fmtInt(job.freezable)}` : '—',
        projT !== null ? `A and B that started trainable (${fmtInt(lastStepInfo.projTotal)} in all)` : 'A and B that started trainable', null, 'stat-proj'),
      stat('Training FLOPs', fmtFlops(tot), n ? `fwd ${fmtFlops(S.cF[n - 1])} · bwd-in ${fmtFlops(S.cBI[n - 1])} · bwd-w ${fmtFlops(S.cBW[n - 1])}` : null, null, 'stat-flops'),
      stat('Saved by freezing (est.)', saved !== null ? fmtFlops(saved) : '—',
        saved !== null && baseline > 0 ? `${fmtPercent(saved / baseline)} of the no-freeze job` : null, SAVED_FLOPS_HELP, 'stat-saved'),
    );
  }

  /** exp(smoothed training loss) at the last step. */
  function lastPpl() {
    const n = S.loss.length;
    if (!n) return job && job.loss !== null ? Math.exp(job.loss) : null;
    return Math.exp(smooth(S.loss)[n - 1]);
  }
  function lastEvalPpl() {
    const ev = evals.filter((e) => Number.isFinite(evalPpl(e))).sort((a, b) => a.epoch - b.epoch);
    return ev.length ? evalPpl(ev[ev.length - 1]) : null;
  }
  /** An eval's perplexity: reported, else exp(eval loss). */
  function evalPpl(e) {
    if (Number.isFinite(e.metrics.perplexity)) return e.metrics.perplexity;
    return Number.isFinite(e.metrics.loss) ? Math.exp(e.metrics.loss) : null;
  }

  /** A finished job: what it kept (job.best, the API's metrics — the jobs
   *  list shows the same); a live one: the best eval so far by spec.metric. */
  function bestEval() {
    if (!job) return null;
    if (TERMINAL.has(job.status)) return job.best;
    return bestOfEvals(job.spec, evals);
  }

  function bestMissing() {
    if (!job) return null;
    if (job.status === 'failed' || job.status === 'cancelled') return `${job.status}: no adapter kept`;
    if (job.status === 'succeeded') return 'no evaluation set: the last epoch was kept';
    return null;
  }

  /** AFLoRA's freezing window: {ti: last warm-up step, fs: first final-phase step, T}. */
  function freezeWindow() {
    const T = (job && job.totalSteps) || lastStepInfo.totalSteps;
    if (!T || !job || job.method !== 'aflora') return null;
    let ti = null; let fs = null;
    if (freezing) {
      ti = freezing.initialSteps;
      fs = freezing.finalStart ?? (freezing.finalSteps !== null ? T - freezing.finalSteps : null);
    }
    // the stored spec is the normalised one: every default written out
    const spec = job.spec;
    const fr = spec.freeze;
    if (!spec.epochs || !fr) return null;
    const spe = T / spec.epochs;
    if (ti === null) ti = fr.initial_warmup_epochs * spe;
    if (fs === null) fs = T - fr.final_warmup_epochs * spe;
    return { ti, fs, T };
  }

  function phaseBands() {
    const w = freezeWindow();
    if (!w) return [];
    const { ti, fs, T } = w;
    return [
      { x0: 0, x1: ti, label: 'initial warm-up (nothing freezes)', class: 'warmup' },
      { x0: fs, x1: T, label: 'final phase (all frozen)', class: 'final' },
    ];
  }

  function renderCharts() {
    const xs = S.xs;
    const T = (job && job.totalSteps) || lastStepInfo.totalSteps;
    const xDomain = T ? [0, T] : undefined;
    charts.loss.update({ xDomain, series: [
      { name: 'loss', xs, ys: S.loss, width: 1, opacity: 0.45, color: PALETTE[0] },
      { name: 'smoothed', xs, ys: smooth(S.loss), width: 2.2, color: PALETTE[1], dash: '' },
    ] });
    charts.lr.update({ xDomain, series: [{ name: 'learning rate', xs, ys: S.lr, color: PALETTE[2] }] });
    if (isCausal()) {
      const evp = evals.filter((e) => Number.isFinite(evalPpl(e)) && Number.isFinite(e.step)).sort((a, b) => a.step - b.step);
      charts.ppl.update({ xDomain, series: [
        { name: 'training (smoothed)', xs, ys: smooth(S.loss).map((v) => (Number.isFinite(v) ? Math.exp(v) : null)), color: PALETTE[0], width: 2 },
        { name: 'evaluation', xs: evp.map((e) => e.step), ys: evp.map(evalPpl), markers: true, color: PALETTE[1], dash: '6 3' },
      ] });
      charts.tps.update({ xDomain, series: [{ name: 'tokens/s', xs, ys: S.tps, color: PALETTE[2] }] });
      pplHost.dataset.evalPoints = String(evp.length);   // for tests, like data-points
    }

    const ev = evals.slice().sort((a, b) => a.epoch - b.epoch);
    const ex = ev.map((e) => e.epoch);
    const names = ['accuracy', 'f1', 'mcc', 'pearson', 'spearman', 'exact_match'].filter((k) => ev.some((e) => Number.isFinite(e.metrics[k])));
    const evalSeries = names.map((k, i) => ({ name: k, xs: ex, ys: ev.map((e) => e.metrics[k]), markers: true, color: PALETTE[i], dash: ['', '6 3', '2 3', '8 3 2 3', '1 2'][i] }));
    if (ev.some((e) => Number.isFinite(e.metrics.loss))) evalSeries.push({ name: 'eval loss', xs: ex, ys: ev.map((e) => e.metrics.loss), axis: 'right', markers: true, color: PALETTE[5], dash: '4 2' });
    if (ev.some((e) => Number.isFinite(e.metrics.mse)) && !names.length) evalSeries.unshift({ name: 'mse', xs: ex, ys: ev.map((e) => e.metrics.mse), markers: true, color: PALETTE[0] });
    const epochs = job && job.spec && job.spec.epochs;
    charts.evalc.update({ series: evalSeries, xDomain: epochs ? [1, Math.max(2, epochs)] : undefined });
    renderEvalTable(ev, names);

    if (!schedPanel.hidden) {
      const sched = [{ name: 'r(t) applied', xs, ys: S.r, color: PALETTE[0] },
        { name: 'matrices training', xs, ys: S.projTrain, axis: 'right', color: PALETTE[1], dash: '6 3' }];
      if (freezing && freezing.schedule.length) {
        sched.push({ name: 'r(t) (API schedule)', xs: freezing.schedule.map((p) => p.step), ys: freezing.schedule.map((p) => p.r), color: PALETTE[4], dash: '2 3', width: 1.4 });
      }
      charts.sched.update({ xDomain, series: sched, bands: phaseBands() });
    }
    charts.flopsStep.update({ xDomain, series: [
      { name: 'forward', xs, ys: S.fF, color: PALETTE[0] },
      { name: 'backward (input)', xs, ys: S.fBI, color: PALETTE[1], dash: '6 3' },
      { name: 'backward (weight)', xs, ys: S.fBW, color: PALETTE[2], dash: '2 3' },
      { name: 'saved by freezing (est.)', xs, ys: S.savedStep, color: PALETTE[3], dash: '8 3 2 3', width: 1.4 },
    ] });
    const total = xs.map((_, i) => S.cF[i] + S.cBI[i] + S.cBW[i]);
    charts.flopsCum.update({ xDomain, series: [
      { name: 'total', xs, ys: total, color: PALETTE[7], width: 2.4 },
      { name: 'forward', xs, ys: S.cF, color: PALETTE[0] },
      { name: 'backward (input)', xs, ys: S.cBI, color: PALETTE[1], dash: '6 3' },
      { name: 'backward (weight)', xs, ys: S.cBW, color: PALETTE[2], dash: '2 3' },
      { name: 'saved by freezing (est.)', xs, ys: S.savedCum, color: PALETTE[3], dash: '8 3 2 3' },
    ] });
    const avg = S.tAvg.length ? S.tAvg[S.tAvg.length - 1] : null;
    charts.params.update({ xDomain, series: [
      { name: 'trainable now', xs, ys: S.tNow, color: PALETTE[0] },
      { name: 'time average so far', xs, ys: S.tAvg, color: PALETTE[1], dash: '6 3' },
    ], hlines: avg !== null ? [{ y: avg, label: `average ${fmtInt(avg)} (paper's count)` }] : [] });
  }

  function renderEvalTable(ev, names) {
    if (!ev.length) { fill(evalTable, h('p', { class: 'muted' }, 'No evaluation yet (one per epoch when the job has an eval set).')); return; }
    const best = bestEval();
    const cols = names.concat(ev.some((e) => Number.isFinite(e.metrics.mse)) && !names.includes('mse') ? ['mse'] : [],
      ev.some((e) => Number.isFinite(e.metrics.perplexity)) ? ['perplexity'] : [], ['loss']);
    fill(evalTable, h('table', { class: 'data' },
      h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'epoch'), h('th', { scope: 'col' }, 'step'), cols.map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', null, ev.map((e) => h('tr', { class: best && best.epoch === e.epoch ? 'best' : null },
        h('td', null, String(e.epoch), best && best.epoch === e.epoch ? h('span', { class: 'tag' }, 'best') : null),
        h('td', null, fmtInt(e.step)), cols.map((c) => h('td', null, fmtNum(e.metrics[c]))))))));
  }

  const render = throttle(() => {
    if (disposed) return;
    renderStats();
    renderProgress();
    renderCharts();
  }, RENDER_EVERY_MS);
  function scheduleRender() { render(); }

  // ---- events -------------------------------------------------------------------
  function addLog(text, cls) {
    logs.push({ text, cls, at: Date.now() });
    if (logs.length > LOG_KEEP) logs.shift();
    logList.append(h('li', { class: cls || null }, text));
    while (logList.children.length > LOG_KEEP) logList.firstChild.remove();
  }

  function onStep(s) {
    // a resumed job re-runs the steps after its last checkpoint: drop ours
    while (S.xs.length && S.xs[S.xs.length - 1] >= s.step) {
      for (const k of Object.keys(S)) if (Array.isArray(S[k])) S[k].pop();
    }
    const f = s.flops; const c = s.flopsTotal;
    if (!S.base && f.backward_weight !== null) S.base = { w: f.backward_weight, f: f.forward, step: s.step };
    let saved = 0;
    if (S.base && f.backward_weight !== null) {
      const scale = S.base.f > 0 && f.forward > 0 ? f.forward / S.base.f : 1;
      saved = S.base.w * scale - f.backward_weight;
    }
    const prevSaved = S.savedCum.length ? S.savedCum[S.savedCum.length - 1] : 0;
    S.xs.push(s.step); S.loss.push(s.loss); S.lr.push(s.lr);
    S.fF.push(f.forward); S.fBI.push(f.backward_input); S.fBW.push(f.backward_weight);
    S.cF.push(c.forward); S.cBI.push(c.backward_input); S.cBW.push(c.backward_weight);
    S.savedStep.push(saved); S.savedCum.push(prevSaved + saved);
    S.tNow.push(s.trainableNow); S.tAvg.push(s.trainableAvg); S.projTrain.push(s.projTrainable);
    S.r.push(s.remaining); S.elapsed.push(s.elapsed);
    S.tps.push(s.tokensPerSecond); S.tokensSeen.push(s.tokensSeen);
    if (s.totalSteps) lastStepInfo.totalSteps = s.totalSteps;
    if (s.epoch !== null) lastStepInfo.epoch = s.epoch;
    if (s.projTotal !== null) lastStepInfo.projTotal = s.projTotal;
    if (job && job.status === 'queued') { job.status = 'running'; renderHeader(); }
    if (s.totalSteps && heatmap.layoutKey) { heatmap.setTotalSteps(s.totalSteps); heatmap.setDomain(heatDomain()); }
    scheduleRender();
  }

  function onFreeze(fz) {
    if (fz.layer === null || !fz.module || !fz.matrix) return;
    const k = `${fz.layer}|${fz.module}|${fz.matrix}`;
    freezes.set(k, fz);
    if (!heatmap.layoutKey || fz.layer >= (layerCount() || 0)) configureHeatmap();
    heatmap.setStep(fz.layer, fz.module, fz.matrix, fz.step, fz.score);
    addLog(`step ${fmtInt(fz.step)}: froze layer ${fz.layer} ${fz.module} ${fz.matrix}`, 'freeze');
    scheduleRender();
  }

  function onEval(e) {
    const i = evals.findIndex((x) => x.epoch === e.epoch);
    if (i >= 0) evals[i] = e; else evals.push(e);
    const hm = Object.entries(e.metrics).filter(([, v]) => Number.isFinite(v)).map(([k, v]) => `${k} ${fmtNum(v)}`).join(', ');
    addLog(`epoch ${e.epoch} evaluated at step ${fmtInt(e.step)}: ${hm}`, 'eval');
    scheduleRender();
  }

  // Status events may be history (the stream replays a job from its first
  // event), so only a final status is applied at once; for the others the
  // job is read again and GET /jobs/{id} has the last word.
  function onStatus(st) {
    addLog(`status: ${st.status}${st.error ? ` (${st.error})` : ''}${st.reason ? ` — ${st.reason}` : ''}`, 'status');
    if (job && TERMINAL.has(st.status) && !TERMINAL.has(job.status)) { job.status = st.status; renderHeader(); }
    refreshJob();
  }

  function setConnection(state) {
    connection = state;
    connEl.textContent = { open: '● live', reconnecting: '○ reconnecting…', closed: '', ended: '' }[state] ?? '';
    connEl.dataset.state = state;
    if (state === 'closed' && !disposed && job && !TERMINAL.has(job.status)) startPolling(POLL_FALLBACK_MS);
  }

  // one GET at a time; calls made meanwhile are folded into one more
  let finalFreezingRead = false;
  let refreshing = null;
  let refreshAgain = false;
  function refreshJob() {
    if (refreshing) { refreshAgain = true; return refreshing; }
    refreshing = fetchJob().finally(() => {
      refreshing = null;
      if (refreshAgain && !disposed) { refreshAgain = false; refreshJob(); }
    });
    return refreshing;
  }

  async function fetchJob() {
    try {
      job = await api.job(id);
      if (errorBox.dataset.local === 'net') { delete errorBox.dataset.local; errorBox.hidden = true; }
      renderHeader();
      // the job has ended: read the final freezing data once
      if (TERMINAL.has(job.status) && !finalFreezingRead) { finalFreezingRead = true; loadFreezing(); }
      scheduleRender();
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) {
        fill(root, h('section', { class: 'panel' }, h('h2', { tabindex: -1 }, 'Job not found'),
          h('p', null, `There is no job ${id}. `, h('a', { href: '#/' }, 'Back to the jobs'))));
        dispose();
      } else showError(e.message, 'net');
    }
  }

  function startPolling(ms) {
    clearInterval(pollTimer);
    pollTimer = setInterval(() => {
      if (document.visibilityState !== 'visible') return;
      if (job && TERMINAL.has(job.status)) { clearInterval(pollTimer); return; }
      refreshJob();
    }, ms);
  }

  function dispose() {
    disposed = true;
    clearInterval(pollTimer);
    if (stream) stream.close();
    Object.values(charts).forEach((c) => c.destroy());
    if (playground) playground.dispose();
  }

  function methodText(spec) {
    const m = spec.method || 'aflora';
    const parts = [m];
    if (m !== 'full' && spec.rank !== undefined) parts.push(`rank ${spec.rank}`);   // normalised spec: always there
    if (m === 'aflora') parts.push(`projections ${spec.trainable_projections || 'ffn'}`);
    return parts.join(' · ');
  }


  // ---- start ----------------------------------------------------------------------
  (async () => {
    api.models().then((m) => { models = m; configureHeatmap(); if (job) renderHeader(); }).catch(() => {});
    await refreshJob();
    if (disposed || !job) return;
    addLog(`job ${id} opened`, 'muted');
    await loadFreezing();
    if (disposed) return;
    stream = followJobEvents(id, {
      step: onStep, freeze: onFreeze, eval: onEval, status: onStatus,
      log: (l) => addLog(l.message),
      onConnection: setConnection,
      // for tests and curious users: how many events were applied, up to which id
      onApplied: (n, lastId) => { section.dataset.events = String(n); section.dataset.lastEvent = String(lastId); },
    });
    startPolling(POLL_LIVE_MS);
    scheduleRender();
  })();

  return dispose;
}

