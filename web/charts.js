// charts.js — hand-written SVG line charts.
//
// Why no library: the dashboard needs one kind of chart (lines over steps,
// optionally a second y axis, shaded phase bands and reference lines) and it
// must work offline with no build step. A few hundred lines of SVG do that,
// and keep the look (CSS variables, light/dark) and accessibility (focusable
// chart, keyboard cursor, text legend with dash patterns so colour is never
// the only cue) under our control.
//
// A chart is created once per panel and re-rendered with update(data); it
// re-renders on resize too. Long series are thinned to min/max per pixel
// column before drawing, so 100 000 steps cost as much as ~1 000.
// The container gets data-points (length of the first series) for tests.
import { svg, h, clear, fill, fmtNum } from './util.js';

/** Okabe–Ito colours (distinguishable with every common colour-vision
 *  deficiency); CSS variables so the dark scheme can brighten them. */
export const PALETTE = ['var(--c-blue)', 'var(--c-orange)', 'var(--c-green)', 'var(--c-pink)',
  'var(--c-sky)', 'var(--c-vermillion)', 'var(--c-yellow)', 'var(--c-grey)'];
export const DASHES = ['', '6 3', '2 3', '8 3 2 3', '1 2', '10 4'];

const HEIGHT = 220;
const MARGIN = { top: 12, right: 16, bottom: 34, left: 58 };
const RIGHT_AXIS_MARGIN = 58;
const CHAR_PX = 6.4;               // width of one 11px tick-label character, roughly

/** About `count` round tick values covering [lo, hi]. A range far below the
 *  values' precision (0.95 and 0.9500000000000001) counts as no range: a
 *  step under half an ulp would never advance the loop below. */
export function niceTicks(lo, hi, count = 5) {
  if (!(hi - lo > Math.max(Math.abs(lo), Math.abs(hi)) * 1e-9)) { const d = Math.abs(lo) || 1; lo -= d / 2; hi += d / 2; }
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  const step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
  const start = Math.ceil(lo / step - 1e-9) * step;
  const ticks = [];
  for (let v = start; v <= hi + step * 1e-9; v += step) ticks.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  return { ticks, step };
}

/** Nice enclosing domain for values (optionally forced to include zero). */
function domainOf(values, includeZero) {
  let lo = Infinity; let hi = -Infinity;
  for (const v of values) { if (Number.isFinite(v)) { if (v < lo) lo = v; if (v > hi) hi = v; } }
  if (!Number.isFinite(lo)) return [0, 1];
  if (includeZero) { lo = Math.min(lo, 0); hi = Math.max(hi, 0); }
  if (!(hi - lo > Math.max(Math.abs(lo), Math.abs(hi)) * 1e-9)) { const d = Math.abs(lo) * 0.1 || 1; return [lo - d, hi + d]; }
  const { ticks, step } = niceTicks(lo, hi);
  return [Math.min(lo, ticks[0]), Math.max(hi, ticks[ticks.length - 1] + (ticks[ticks.length - 1] < hi ? step : 0))];
}

/** Index of the x closest to target in the ascending array xs. */
export function nearestIndex(xs, target) {
  let lo = 0; let hi = xs.length - 1;
  if (hi < 0) return -1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (xs[mid] < target) lo = mid; else hi = mid;
  }
  return Math.abs(xs[lo] - target) <= Math.abs(xs[hi] - target) ? lo : hi;
}

/** Thin a series to at most ~2 points per pixel column (min and max kept). */
function thin(xs, ys, px, x0, x1) {
  const n = xs.length;
  if (n <= px * 2) return { xs, ys };
  const ox = []; const oy = [];
  const w = (x1 - x0) / px || 1;
  let i = 0;
  while (i < n) {
    const col = Math.floor((xs[i] - x0) / w);
    let iMin = i; let iMax = i;
    let j = i;
    while (j < n && Math.floor((xs[j] - x0) / w) === col) {
      if (ys[j] < ys[iMin]) iMin = j;
      if (ys[j] > ys[iMax]) iMax = j;
      j++;
    }
    const [a, b] = iMin < iMax ? [iMin, iMax] : [iMax, iMin];
    ox.push(xs[a]); oy.push(ys[a]);
    if (b !== a) { ox.push(xs[b]); oy.push(ys[b]); }
    i = j;
  }
  return { xs: ox, ys: oy };
}

export class LineChart {
  /**
   * opts: {title, xLabel, yLabel, y2Label, yFormat, y2Format, xFormat,
   *        includeZero, y2IncludeZero, description, height}
   */
  constructor(container, opts = {}) {
    this.el = container;
    this.opts = opts;
    this.data = { series: [] };
    this.cursor = -1;            // index into the first series, or -1
    this.el.classList.add('chart');
    this.svgHost = h('div', { class: 'chart-svg' });
    this.legend = h('ul', { class: 'chart-legend' });
    this.tip = h('div', { class: 'chart-tip', role: 'status', 'aria-live': 'off', hidden: true });
    this.el.append(this.svgHost, this.tip, this.legend);
    this.svgHost.tabIndex = 0;
    this.svgHost.setAttribute('role', 'img');
    this.svgHost.addEventListener('pointermove', (e) => this.onPointer(e));
    this.svgHost.addEventListener('pointerleave', () => this.setCursor(-1));
    this.svgHost.addEventListener('keydown', (e) => this.onKey(e));
    this.svgHost.addEventListener('blur', () => this.setCursor(-1));
    if (typeof ResizeObserver !== 'undefined') {
      let lastW = 0;
      this.ro = new ResizeObserver(() => {
        const w = this.svgHost.clientWidth;
        if (w && Math.abs(w - lastW) > 1) { lastW = w; this.render(); }
      });
      this.ro.observe(this.svgHost);
    }
  }

  destroy() { if (this.ro) this.ro.disconnect(); }

  /** data: {series: [{name, xs, ys, color, dash, width, axis, markers, area}],
   *         bands: [{x0, x1, label}], hlines: [{y, label, axis}], xDomain: [lo, hi]} */
  update(data) {
    this.data = data;
    this.render();
  }

  render() {
    const { series = [], bands = [], hlines = [], xDomain } = this.data;
    const o = this.opts;
    const W = Math.max(260, this.svgHost.clientWidth || 600);
    const H = o.height || HEIGHT;
    const hasRight = series.some((s) => s.axis === 'right');
    const first = series[0];
    this.el.dataset.points = String(first ? first.xs.length : 0);

    const allX = series.flatMap((s) => (s.xs.length ? [s.xs[0], s.xs[s.xs.length - 1]] : []));
    let [x0, x1] = xDomain || [Math.min(...allX), Math.max(...allX)];
    if (!Number.isFinite(x0) || !Number.isFinite(x1)) { x0 = 0; x1 = 1; }
    if (x1 <= x0) x1 = x0 + 1;
    const left = series.filter((s) => s.axis !== 'right');
    const right = series.filter((s) => s.axis === 'right');
    const yl = domainOf(left.flatMap((s) => s.ys).concat(hlines.filter((l) => l.axis !== 'right').map((l) => l.y)), o.includeZero);
    const yr = domainOf(right.flatMap((s) => s.ys).concat(hlines.filter((l) => l.axis === 'right').map((l) => l.y)), o.y2IncludeZero);
    const fmtY = o.yFormat || fmtNum;
    const fmtY2 = o.y2Format || fmtNum;
    const fmtX = o.xFormat || ((x) => fmtNum(x, 6));
    // margins wide enough for the longest tick label on each side
    const yTicksL = niceTicks(yl[0], yl[1], 5).ticks.filter((t) => t >= yl[0] && t <= yl[1]);
    const yTicksR = right.length ? niceTicks(yr[0], yr[1], 5).ticks.filter((t) => t >= yr[0] && t <= yr[1]) : [];
    const widest = (ticks, f) => ticks.reduce((w, t) => Math.max(w, String(f(t)).length), 0) * CHAR_PX;
    const m = { ...MARGIN,
      left: Math.max(MARGIN.left, widest(yTicksL, fmtY) + (o.yLabel ? 28 : 12)),
      right: hasRight ? Math.max(RIGHT_AXIS_MARGIN, widest(yTicksR, fmtY2) + (o.y2Label ? 28 : 12)) : MARGIN.right };
    const pw = W - m.left - m.right;
    const ph = H - m.top - m.bottom;
    const sx = (x) => m.left + ((x - x0) / (x1 - x0)) * pw;
    const syL = (y) => m.top + ph - ((y - yl[0]) / (yl[1] - yl[0])) * ph;
    const syR = (y) => m.top + ph - ((y - yr[0]) / (yr[1] - yr[0])) * ph;
    this.scale = { sx, syL, syR, x0, x1, m, pw, ph, W, H };

    const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, width: W, height: H, 'aria-hidden': 'true', focusable: 'false' });

    // phase bands under everything
    for (const b of bands) {
      const a = sx(Math.max(x0, b.x0)); const z = sx(Math.min(x1, b.x1));
      if (!(z > a)) continue;
      root.append(svg('rect', { class: `band ${b.class || ''}`, x: a, y: m.top, width: z - a, height: ph }));
      // in-chart label only where it fits; the legend always names the band
      if (b.label && (z - a) > b.label.length * CHAR_PX + 8) root.append(svg('text', { class: 'band-label', x: a + 4, y: m.top + 12 }, b.label));
    }
    // grid and axes
    const g = svg('g', { class: 'axis' });
    for (const t of yTicksL) {
      g.append(svg('line', { class: 'grid', x1: m.left, x2: m.left + pw, y1: syL(t), y2: syL(t) }));
      g.append(svg('text', { x: m.left - 6, y: syL(t) + 4, 'text-anchor': 'end' }, fmtY(t)));
    }
    if (right.length) {
      for (const t of yTicksR) {
        g.append(svg('text', { x: m.left + pw + 6, y: syR(t) + 4, 'text-anchor': 'start' }, fmtY2(t)));
      }
    }
    const xt = niceTicks(x0, x1, Math.max(2, Math.floor(pw / 80)));
    for (const t of xt.ticks) {
      if (t < x0 || t > x1) continue;
      g.append(svg('line', { class: 'tick', x1: sx(t), x2: sx(t), y1: m.top + ph, y2: m.top + ph + 4 }));
      g.append(svg('text', { x: sx(t), y: m.top + ph + 16, 'text-anchor': 'middle' }, fmtX(t)));
    }
    g.append(svg('line', { class: 'frame', x1: m.left, x2: m.left + pw, y1: m.top + ph, y2: m.top + ph }));
    g.append(svg('line', { class: 'frame', x1: m.left, x2: m.left, y1: m.top, y2: m.top + ph }));
    if (o.xLabel) g.append(svg('text', { class: 'axis-label', x: m.left + pw / 2, y: H - 4, 'text-anchor': 'middle' }, o.xLabel));
    if (o.yLabel) {
      g.append(svg('text', { class: 'axis-label', transform: `translate(12 ${m.top + ph / 2}) rotate(-90)`, 'text-anchor': 'middle' }, o.yLabel));
    }
    if (o.y2Label && right.length) {
      g.append(svg('text', { class: 'axis-label', transform: `translate(${W - 8} ${m.top + ph / 2}) rotate(90)`, 'text-anchor': 'middle' }, o.y2Label));
    }
    root.append(g);

    for (const l of hlines) {
      const y = (l.axis === 'right' ? syR : syL)(l.y);
      root.append(svg('line', { class: 'hline', x1: m.left, x2: m.left + pw, y1: y, y2: y, style: l.color ? `stroke:${l.color}` : null }));
      if (l.label) root.append(svg('text', { class: 'hline-label', x: m.left + pw - 4, y: y - 4, 'text-anchor': 'end' }, l.label));
    }

    // series
    series.forEach((s, i) => {
      const color = s.color || PALETTE[i % PALETTE.length];
      const sy = s.axis === 'right' ? syR : syL;
      const t = thin(s.xs, s.ys, pw, x0, x1);
      let d = '';
      let pen = false;
      for (let k = 0; k < t.xs.length; k++) {
        const y = t.ys[k];
        if (!Number.isFinite(y)) { pen = false; continue; }
        d += `${pen ? 'L' : 'M'}${sx(t.xs[k]).toFixed(1)},${sy(y).toFixed(1)}`;
        pen = true;
      }
      const path = svg('path', {
        class: 'series', d,
        style: `stroke:${color};stroke-width:${s.width || 1.8};${s.dash ? `stroke-dasharray:${s.dash};` : ''}${s.opacity ? `opacity:${s.opacity};` : ''}`,
        dataset: { series: s.name, count: String(s.xs.length) },
      });
      root.append(path);
      if (s.markers) {
        for (let k = 0; k < s.xs.length; k++) {
          if (!Number.isFinite(s.ys[k])) continue;
          root.append(svg('circle', { class: 'marker', cx: sx(s.xs[k]), cy: sy(s.ys[k]), r: 3.2, style: `fill:${color}` }));
        }
      }
    });
    this.cursorLayer = svg('g', { class: 'cursor' });
    root.append(this.cursorLayer);
    fill(this.svgHost, root);

    // legend: colour swatch drawn with the same dash as the line
    clear(this.legend);
    series.forEach((s, i) => {
      if (s.legend === false) return;
      const color = s.color || PALETTE[i % PALETTE.length];
      const sw = svg('svg', { width: 26, height: 10, 'aria-hidden': 'true' },
        svg('line', { x1: 1, x2: 25, y1: 5, y2: 5, style: `stroke:${color};stroke-width:${Math.max(2, s.width || 2)};${s.dash ? `stroke-dasharray:${s.dash}` : ''}` }));
      this.legend.append(h('li', null, sw, s.name, s.axis === 'right' && o.y2Label ? ' (right axis)' : ''));
    });
    for (const b of bands) if (b.label) this.legend.append(h('li', null, h('span', { class: `band-swatch ${b.class || ''}`, 'aria-hidden': 'true' }), b.label));

    const last = first && first.xs.length ? `; last ${first.name} ${fmtY(first.ys[first.ys.length - 1])} at ${o.xLabel || 'x'} ${fmtX(first.xs[first.xs.length - 1])}` : '';
    this.svgHost.setAttribute('aria-label', `${o.title || 'chart'}: ${first ? first.xs.length : 0} points${last}. Use the arrow keys to read values.`);
    if (this.cursor >= 0) this.drawCursor();
  }

  onPointer(e) {
    const s = this.data.series[0];
    if (!s || !s.xs.length || !this.scale) return;
    const rect = this.svgHost.getBoundingClientRect();
    const { x0, x1, m, pw, W } = this.scale;
    const px = ((e.clientX - rect.left) / rect.width) * W;
    const x = x0 + ((px - m.left) / pw) * (x1 - x0);
    this.setCursor(nearestIndex(s.xs, x));
  }

  onKey(e) {
    const s = this.data.series[0];
    if (!s || !s.xs.length) return;
    const n = s.xs.length;
    const big = Math.max(1, Math.round(n / 20));
    const moves = { ArrowRight: 1, ArrowLeft: -1, PageUp: big, PageDown: -big };
    if (e.key in moves) {
      this.setCursor(Math.min(n - 1, Math.max(0, (this.cursor < 0 ? n - 1 : this.cursor) + moves[e.key])));
    } else if (e.key === 'Home') this.setCursor(0);
    else if (e.key === 'End') this.setCursor(n - 1);
    else if (e.key === 'Escape') this.setCursor(-1);
    else return;
    e.preventDefault();
  }

  setCursor(i) {
    this.cursor = i;
    this.drawCursor();
  }

  drawCursor() {
    if (!this.cursorLayer) return;
    clear(this.cursorLayer);
    const s0 = this.data.series[0];
    if (this.cursor < 0 || !s0 || this.cursor >= s0.xs.length) {
      this.tip.hidden = true;
      return;
    }
    const { sx, syL, syR, m, ph, W } = this.scale;
    const x = s0.xs[this.cursor];
    const px = sx(x);
    this.cursorLayer.append(svg('line', { x1: px, x2: px, y1: m.top, y2: m.top + ph }));
    const o = this.opts;
    const fmtX = o.xFormat || ((v) => fmtNum(v, 6));
    const rows = [h('div', { class: 'tip-x' }, `${o.xLabel || 'x'} ${fmtX(x)}`)];
    this.data.series.forEach((s, i) => {
      if (!s.xs.length || s.tooltip === false) return;
      const k = nearestIndex(s.xs, x);
      const y = s.ys[k];
      if (!Number.isFinite(y)) return;
      const fmt = (s.axis === 'right' ? o.y2Format : o.yFormat) || fmtNum;
      const color = s.color || PALETTE[i % PALETTE.length];
      this.cursorLayer.append(svg('circle', { cx: sx(s.xs[k]), cy: (s.axis === 'right' ? syR : syL)(y), r: 3.5, style: `fill:${color}` }));
      rows.push(h('div', null, h('span', { class: 'tip-swatch', style: `background:${color}` }), `${s.name}: ${s.format ? s.format(y) : fmt(y)}`));
    });
    fill(this.tip, ...rows);
    this.tip.hidden = false;
    // place the tooltip beside the cursor, inside the chart box
    const frac = px / W;
    this.tip.style.left = frac < 0.6 ? `calc(${(frac * 100).toFixed(1)}% + 12px)` : '';
    this.tip.style.right = frac >= 0.6 ? `calc(${((1 - frac) * 100).toFixed(1)}% + 12px)` : '';
  }
}

/** Exponential moving average with bias correction (as TensorBoard smooths). */
export function smooth(ys, weight = 0.9) {
  const out = new Array(ys.length);
  let acc = 0; let norm = 0;
  for (let i = 0; i < ys.length; i++) {
    const y = ys[i];
    if (!Number.isFinite(y)) { out[i] = NaN; continue; }
    acc = weight * acc + (1 - weight) * y;
    norm = weight * norm + (1 - weight);
    out[i] = acc / norm;
  }
  return out;
}
