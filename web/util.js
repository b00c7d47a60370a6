// util.js — small DOM and formatting helpers shared by every view.
//
// The dashboard has no framework and no build step: views build their DOM
// with h() (HTML) and svg() (SVG), and re-render the parts that change. The
// number formats live here so that every chart, table and tooltip prints a
// step, a FLOP count or a timestamp the same way.

const SVG_NS = 'http://www.w3.org/2000/svg';

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'text') el.textContent = v;
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** h('div', {class: 'x', onclick: fn}, child, 'text', [more]) -> HTMLElement */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

/** Same as h() for SVG elements. */
export function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

/** Replace el's children (arrays are flattened, like h()). */
export function fill(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}

const isNum = (x) => typeof x === 'number' && Number.isFinite(x);

/** 1234567 -> "1,234,567"; non-numbers -> "—". */
export function fmtInt(n) {
  return isNum(n) ? Math.round(n).toLocaleString('en-US') : '—';
}

/** A float with `digits` significant digits, no trailing zeros: 0.6477, 1.2e-5. */
export function fmtNum(x, digits = 4) {
  if (!isNum(x)) return '—';
  if (x === 0) return '0';
  const a = Math.abs(x);
  if (a >= 1e6 || a < 1e-3) return x.toExponential(Math.max(0, digits - 2)).replace(/\.?0+e/, 'e');
  return String(Number(x.toPrecision(digits)));
}

const SI = [[1e15, 'P'], [1e12, 'T'], [1e9, 'G'], [1e6, 'M'], [1e3, 'k']];

/** 9.205e9 -> "9.21 G" (the unit follows: "9.21 GFLOP"). */
export function fmtSI(x, digits = 3) {
  if (!isNum(x)) return '—';
  const a = Math.abs(x);
  for (const [v, p] of SI) if (a >= v) return `${Number((x / v).toPrecision(digits))} ${p}`;
  return `${Number(x.toPrecision(digits))} `;
}

export const fmtFlops = (x) => (isNum(x) ? `${fmtSI(x)}FLOP` : '—');

export function fmtPercent(x, digits = 1) {
  return isNum(x) ? `${(x * 100).toFixed(digits)} %` : '—';
}

/** Milliseconds since the epoch -> "2025-11-29 01:34:05" in local time. */
export function fmtTime(ms) {
  if (!isNum(ms) || ms <= 0) return '—';
  const d = new Date(ms);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ` +
    `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** Seconds -> "4.2 s", "3 min 05 s", "2 h 01 min". */
export function fmtDuration(s) {
  if (!isNum(s) || s < 0) return '—';
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(Math.floor(s % 60)).padStart(2, '0')} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, '0')} min`;
}

/** Call fn at most once per `ms`, always running the last call (trailing). */
export function throttle(fn, ms) {
  let timer = null;
  let last = 0;
  return function throttled() {
    if (timer) return;
    const wait = Math.max(0, last + ms - performance.now());
    timer = setTimeout(() => {
      timer = null;
      last = performance.now();
      fn();
    }, wait);
  };
}

/** Unique ids for label/aria wiring. */
let nextId = 0;
export const uid = (prefix = 'id') => `${prefix}-${++nextId}`;

/** An "i" button whose tooltip (the explanation) shows on hover and focus. */
export function infoTip(text, label = 'How this is computed') {
  const id = uid('tip');
  return h('span', { class: 'info-wrap' },
    h('button', { type: 'button', class: 'info', 'aria-label': label, 'aria-describedby': id }, 'i'),
    h('span', { class: 'info-text', role: 'tooltip', id }, text));
}
