// heatmap.js — the freezing heatmap in the style of the AFLoRA paper's Figure 5.
//
// One row per adapted module and projection (query A, query B, ...,
// output B), one column per encoder layer; a cell is coloured by the
// optimisation step at which that matrix froze, on a viridis scale
// (perceptually uniform, readable in grey and with red-green colour
// blindness). The colour domain is the window in which AFLoRA can freeze
// anything — from the end of the initial warm-up to the first step of the
// final phase, known from the spec before training starts — so the scale
// is not wasted on steps where nothing can happen, and a cell's colour
// never changes once set: cells fill in live as `freeze` events arrive.
// (Without a known window the domain is step 0 to the last step.)
//
// Cells that have no freeze step are drawn so they cannot be mistaken for a
// colour on the scale, and carry a text mark as well:
//   training  – still trainable (hatched, "…")
//   initial   – frozen from the start: never trainable in this job
//               (AFLoRA's non-FFN projections with trainable_projections
//               "ffn", every ELoRA projection) (solid grey, "—")
//   unfrozen  – the job ended and the matrix never froze (LoRA, or a
//               cancelled/failed run) (outlined, "∞")
// It is a real table (role grid) with a roving tabindex: Tab enters it,
// the arrow keys move between cells, and the focused or hovered cell shows
// layer, module, matrix and step. Each cell carries data-layer,
// data-module, data-matrix, data-state and (frozen only) data-step.
import { h, fill, fmtInt, fmtNum } from './util.js';
import { cellKey } from './api.js';

// viridis at 9 evenly spaced points (matplotlib's colormap data)
const VIRIDIS = ['#440154', '#472c7a', '#3b518b', '#2c718e', '#21908d', '#27ad81', '#5cc863', '#aadc32', '#fde725'];

function hexToRgb(hex) {
  const v = parseInt(hex.slice(1), 16);
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
}
const VIRIDIS_RGB = VIRIDIS.map(hexToRgb);

/** t in [0, 1] -> "rgb(r g b)" on the viridis scale. */
export function viridis(t) {
  const x = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0)) * (VIRIDIS_RGB.length - 1);
  const i = Math.min(VIRIDIS_RGB.length - 2, Math.floor(x));
  const f = x - i;
  const [a, b] = [VIRIDIS_RGB[i], VIRIDIS_RGB[i + 1]];
  const c = a.map((v, k) => Math.round(v + (b[k] - v) * f));
  return `rgb(${c[0]} ${c[1]} ${c[2]})`;
}

/** Dark text on the light end of the scale, white on the dark end. */
function textOn(t) {
  return t > 0.55 ? '#111' : '#fff';
}

const STATE_TEXT = {
  training: 'still training',
  initial: 'frozen from start (never trainable in this job)',
  unfrozen: 'never froze (trained to the end)',
};
const STATE_MARK = { training: '…', initial: '—', unfrozen: '∞' };

export class FreezeHeatmap {
  constructor(container) {
    this.el = container;
    this.el.classList.add('heatmap');
    this.cells = new Map();          // cellKey -> {td, layer, module, matrix, state, step, score}
    this.totalSteps = 1;
    this.domain = null;              // [first, last] step of the colour scale
    this.finished = false;
    this.tableHost = h('div', { class: 'heatmap-scroll' });
    this.tip = h('div', { class: 'heatmap-tip', hidden: true, role: 'tooltip' });
    this.legend = h('div', { class: 'heatmap-legend' });
    this.summary = h('p', { class: 'heatmap-summary', 'aria-live': 'polite' });
    this.el.append(this.summary, this.tableHost, this.tip, this.legend);
  }

  /** layers: count; modules: [{name, label, ffn}]; isInitiallyTrainable(module) -> bool. */
  configure({ layers, modules, isInitiallyTrainable, totalSteps, domain }) {
    const key = JSON.stringify([layers, modules.map((m) => [m.name, m.label, m.ffn])]);
    if (key === this.layoutKey) {
      if (totalSteps) this.setTotalSteps(totalSteps);
      if (domain) this.setDomain(domain);
      return;
    }
    if (domain && domain[1] > domain[0]) this.domain = domain;
    this.layoutKey = key;
    this.layers = layers;
    this.modules = modules;
    this.isInitiallyTrainable = isInitiallyTrainable;
    if (totalSteps) this.totalSteps = totalSteps;
    const old = this.cells;
    this.cells = new Map();
    const table = h('table', { class: 'heatmap-table', role: 'grid', 'aria-label': 'Step at which each adapter matrix froze, by module and layer' });
    const head = h('tr', null, h('th', { scope: 'col', class: 'corner' }, 'module · matrix \\ layer'));
    for (let l = 0; l < layers; l++) head.append(h('th', { scope: 'col' }, String(l)));
    table.append(h('thead', null, head));
    const body = h('tbody');
    this.grid = [];
    modules.forEach((mod) => {
      for (const matrix of ['A', 'B']) {
        const tr = h('tr', null, h('th', { scope: 'row' }, `${mod.label} ${matrix}`));
        const row = [];
        for (let layer = 0; layer < layers; layer++) {
          const td = h('td', { role: 'gridcell', tabindex: -1, dataset: { layer: String(layer), module: mod.name, matrix } });
          td.addEventListener('pointerenter', () => this.showTip(td));
          td.addEventListener('pointerleave', () => { if (document.activeElement !== td) this.hideTip(); });
          td.addEventListener('focus', () => { this.focusCell = td; this.showTip(td); });
          td.addEventListener('blur', () => this.hideTip());
          const c = { td, layer, module: mod.name, label: mod.label, matrix, state: null, step: null, score: null };
          const k = cellKey(layer, mod.name, matrix);
          this.cells.set(k, c);
          const prev = old.get(k);
          if (prev && prev.step !== null) { c.step = prev.step; c.score = prev.score; }
          row.push(td);
          tr.append(td);
        }
        this.grid.push(row);
        body.append(tr);
      }
    });
    table.append(body);
    table.addEventListener('keydown', (e) => this.onKey(e));
    fill(this.tableHost, table);
    if (this.grid.length && this.grid[0].length) this.grid[0][0].tabIndex = 0;
    for (const c of this.cells.values()) this.paint(c);
    this.renderLegend();
    this.updateSummary();
  }

  setTotalSteps(n) {
    if (!(n > 0) || n === this.totalSteps) return;
    this.totalSteps = n;
    for (const c of this.cells.values()) this.paint(c);
    this.renderLegend();
  }

  /** [lo, hi]: steps at the two ends of the colour scale. */
  setDomain(domain) {
    if (!domain || !(domain[1] > domain[0])) return;
    if (this.domain && this.domain[0] === domain[0] && this.domain[1] === domain[1]) return;
    this.domain = domain;
    for (const c of this.cells.values()) this.paint(c);
    this.renderLegend();
  }

  scaleOf(step) {
    const [lo, hi] = this.domain || [0, Math.max(1, this.totalSteps)];
    return (step - lo) / (hi - lo);
  }

  setFinished(finished) {
    if (this.finished === finished) return;
    this.finished = finished;
    for (const c of this.cells.values()) this.paint(c);
    this.updateSummary();
  }

  /** A matrix froze at `step` (null: it has not). Unknown cells are ignored. */
  setStep(layer, module, matrix, step, score = null) {
    const c = this.cells.get(cellKey(layer, module, matrix));
    if (!c) return false;
    if (c.step === step && (score === null || c.score === score)) return true;
    c.step = step;
    if (score !== null) c.score = score;
    this.paint(c);
    this.updateSummary();
    return true;
  }

  stateOf(c) {
    if (c.step !== null && c.step > 0) return 'frozen';
    if (!this.isInitiallyTrainable(c.module)) return 'initial';
    return this.finished ? 'unfrozen' : 'training';
  }

  paint(c) {
    const state = this.stateOf(c);
    c.state = state;
    const { td } = c;
    td.dataset.state = state;
    if (state === 'frozen') {
      const t = Math.min(1, Math.max(0, this.scaleOf(c.step)));
      td.dataset.step = String(c.step);
      td.style.background = viridis(t);
      td.style.color = textOn(t);
      td.textContent = String(c.step);
    } else {
      delete td.dataset.step;
      td.style.background = '';
      td.style.color = '';
      td.textContent = STATE_MARK[state];
    }
    td.setAttribute('aria-label', this.describe(c));
    if (this.focusCell === td && !this.tip.hidden) this.showTip(td);
  }

  describe(c) {
    const what = c.state === 'frozen' ? `froze at step ${fmtInt(c.step)}` : STATE_TEXT[c.state];
    return `layer ${c.layer}, ${c.module}, matrix ${c.matrix}: ${what}`;
  }

  showTip(td) {
    const c = this.cells.get(cellKey(Number(td.dataset.layer), td.dataset.module, td.dataset.matrix));
    if (!c) return;
    const state = c.state === 'frozen'
      ? `froze at step ${fmtInt(c.step)} of ${fmtInt(this.totalSteps)}` : STATE_TEXT[c.state];
    fill(this.tip, 
      h('div', null, h('b', null, `layer ${c.layer}`), ` · ${c.module} · ${c.matrix}`),
      h('div', null, state),
      c.score !== null && c.state === 'frozen' ? h('div', { class: 'muted' }, `freezing score ${fmtNum(c.score, 3)}`) : null,
    );
    this.tip.hidden = false;
    const host = this.el.getBoundingClientRect();
    const r = td.getBoundingClientRect();
    const left = Math.min(Math.max(0, r.left - host.left + r.width / 2 - 90), Math.max(0, host.width - 200));
    this.tip.style.left = `${left}px`;
    this.tip.style.top = `${r.bottom - host.top + 6}px`;
  }

  hideTip() { this.tip.hidden = true; }

  onKey(e) {
    const td = e.target.closest('td');
    if (!td) return;
    let r = -1; let col = -1;
    this.grid.forEach((row, i) => { const j = row.indexOf(td); if (j >= 0) { r = i; col = j; } });
    if (r < 0) return;
    const rows = this.grid.length; const cols = this.grid[0].length;
    const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
    if (e.key in moves) { r = Math.min(rows - 1, Math.max(0, r + moves[e.key][0])); col = Math.min(cols - 1, Math.max(0, col + moves[e.key][1])); }
    else if (e.key === 'Home') col = 0;
    else if (e.key === 'End') col = cols - 1;
    else if (e.key === 'Escape') { this.hideTip(); return; }
    else return;
    e.preventDefault();
    td.tabIndex = -1;
    const next = this.grid[r][col];
    next.tabIndex = 0;
    next.focus();
  }

  renderLegend() {
    const [lo, hi] = this.domain || [0, Math.max(1, this.totalSteps)];
    const stops = [];
    for (let i = 0; i <= 10; i++) stops.push(`${viridis(i / 10)} ${i * 10}%`);
    const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => h('span', { style: `left:${f * 100}%` }, `${f === 0 && lo > 0 ? '≤ ' : ''}${fmtInt(Math.round(lo + f * (hi - lo)))}${f === 1 && this.domain ? '+' : ''}`));
    fill(this.legend, 
      h('div', { class: 'legend-scale' },
        h('span', { class: 'legend-title' }, 'froze at step'),
        h('div', { class: 'legend-bar-wrap' },
          h('div', { class: 'legend-bar', style: `background: linear-gradient(to right, ${stops.join(', ')})`, role: 'img', 'aria-label': `colour scale: dark purple = step ${fmtInt(lo)} or earlier, yellow = step ${fmtInt(hi)} or later` }),
          h('div', { class: 'legend-ticks', 'aria-hidden': 'true' }, ticks))),
      h('ul', { class: 'legend-states' },
        h('li', null, h('span', { class: 'swatch', dataset: { state: 'training' } }, STATE_MARK.training), 'still training'),
        h('li', null, h('span', { class: 'swatch', dataset: { state: 'initial' } }, STATE_MARK.initial), 'frozen from start'),
        h('li', null, h('span', { class: 'swatch', dataset: { state: 'unfrozen' } }, STATE_MARK.unfrozen), 'never froze')),
    );
  }

  updateSummary() {
    let frozen = 0; let trainable = 0; let lastStep = 0;
    for (const c of this.cells.values()) {
      if (!this.isInitiallyTrainable(c.module)) continue;
      trainable++;
      if (c.step !== null && c.step > 0) { frozen++; lastStep = Math.max(lastStep, c.step); }
    }
    this.summary.textContent = trainable === 0
      ? 'No adapter matrix is trainable in this job (all frozen from the start).'
      : `${frozen} of ${trainable} matrices that started trainable have frozen${frozen ? `; the last at step ${fmtInt(lastStep)}` : ''}.`;
    this.el.dataset.frozen = String(frozen);
  }
}
