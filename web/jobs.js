// jobs.js — the jobs list: status, model, method, progress, latest loss and
// best metric of every job, newest first, filtered by status and paged. The
// best metric is what a finished job kept (spec.metric of its best epoch,
// api.js keptBest), the same figure its page shows.
//
// It polls GET /jobs every couple of seconds while the tab is visible
// (one request for the whole page is cheaper than one event stream per
// row). Re-rendering keeps keyboard focus on the same job's link.
import { h, clear, fmtInt, fmtNum, fmtTime } from './util.js';
import { api, STATUSES } from './api.js';

const POLL_MS = 2000;
const PAGE = 25;

const STATUS_ICON = { queued: '◷', running: '▶', succeeded: '✓', failed: '✕', cancelled: '⊘' };

/** A status shown as icon + word (never colour alone). */
export function statusBadge(status) {
  return h('span', { class: 'badge', dataset: { status } }, h('span', { 'aria-hidden': 'true' }, STATUS_ICON[status] || '?'), ` ${status}`);
}

function progressCell(j) {
  const total = j.totalSteps;
  const frac = total ? Math.min(1, j.step / total) : 0;
  const epochs = j.spec && j.spec.epochs;
  return h('td', { class: 'progress-cell' },
    h('div', { class: 'progress small', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': total || 1, 'aria-valuenow': j.step, 'aria-label': `job ${j.id} progress` },
      h('div', { class: 'progress-fill', style: `width:${(frac * 100).toFixed(1)}%` })),
    h('span', { class: 'muted' }, total ? `${fmtInt(j.step)} / ${fmtInt(total)}` : '—',
      j.epoch && total ? ` · ep ${j.epoch}${epochs ? `/${epochs}` : ''}` : ''));
}

/** params: URLSearchParams of the route (status, offset). */
export function renderJobs(root, params) {
  let status = params.get('status') || '';
  let offset = Math.max(0, Number(params.get('offset')) || 0);
  let timer = null;
  let disposed = false;
  let inflight = null;

  const heading = h('h2', { tabindex: -1, id: 'jobs-title' }, 'Jobs');
  const filters = h('fieldset', { class: 'segmented', id: 'status-filter' }, h('legend', { class: 'sr-only' }, 'Show jobs by status'));
  for (const s of [''].concat(STATUSES)) {
    const input = h('input', { type: 'radio', name: 'status', value: s, id: `filter-${s || 'all'}` });
    input.checked = s === status;
    input.addEventListener('change', () => {
      status = s;
      offset = 0;
      updateHash();
      load();
    });
    filters.append(h('label', { for: input.id }, input, h('span', null, s || 'all')));
  }
  const tbody = h('tbody');
  const info = h('p', { class: 'muted', 'aria-live': 'polite' });
  const prev = h('button', { type: 'button', class: 'secondary' }, '← Newer');
  const next = h('button', { type: 'button', class: 'secondary' }, 'Older →');
  prev.addEventListener('click', () => { offset = Math.max(0, offset - PAGE); updateHash(); load(); });
  next.addEventListener('click', () => { offset += PAGE; updateHash(); load(); });
  const errorBox = h('div', { class: 'error-box', role: 'alert', hidden: true });

  root.append(h('section', { class: 'jobs', 'aria-labelledby': 'jobs-title' },
    h('div', { class: 'title-row' }, heading, h('a', { class: 'button', href: '#/new' }, '+ New job')),
    filters, errorBox,
    h('div', { class: 'table-scroll' },
      h('table', { class: 'data jobs-table' },
        h('caption', { class: 'sr-only' }, 'Jobs, newest first'),
        h('thead', null, h('tr', null, ['Job', 'Status', 'Model', 'Method', 'Progress', 'Loss', 'Best metric', 'Created']
          .map((t) => h('th', { scope: 'col' }, t)))),
        tbody)),
    h('div', { class: 'pager' }, prev, info, next)));
  heading.focus();

  function updateHash() {
    const q = new URLSearchParams();
    if (status) q.set('status', status);
    if (offset) q.set('offset', String(offset));
    const want = `#/${q.toString() ? `?${q}` : ''}`;
    if (location.hash !== want) history.replaceState(null, '', want);
  }

  function row(j) {
    return h('tr', { dataset: { id: j.id, status: j.status } },
      h('td', null, h('a', { href: `#/jobs/${j.id}`, class: 'job-link' }, h('code', null, j.id))),
      h('td', null, statusBadge(j.status)),
      h('td', null, j.model),
      h('td', null, j.method),
      progressCell(j),
      h('td', { class: 'num' }, fmtNum(j.loss)),
      h('td', { class: 'num best-cell' }, j.best ? `${j.best.name} ${fmtNum(j.best.value)}` : '—'),
      h('td', null, fmtTime(j.createdAt)));
  }

  async function load() {
    if (disposed) return;
    if (inflight) inflight.abort();
    inflight = new AbortController();
    try {
      const { jobs, total } = await api.jobs({ status, limit: PAGE, offset }, inflight.signal);
      if (disposed) return;
      errorBox.hidden = true;
      const focused = document.activeElement && tbody.contains(document.activeElement)
        ? document.activeElement.closest('tr')?.dataset.id : null;
      clear(tbody);
      if (!jobs.length) {
        tbody.append(h('tr', null, h('td', { colspan: 8, class: 'empty' },
          offset ? 'No more jobs.' : status ? `No ${status} jobs.` : 'No jobs yet. ',
          !status && !offset ? h('a', { href: '#/new' }, 'Start one.') : null)));
      } else for (const j of jobs) tbody.append(row(j));
      if (focused) tbody.querySelector(`tr[data-id="${CSS.escape(focused)}"] a`)?.focus();
      prev.disabled = offset === 0;
      next.disabled = total !== null ? offset + PAGE >= total : jobs.length < PAGE;
      info.textContent = jobs.length ? `${offset + 1}–${offset + jobs.length}${total !== null ? ` of ${total}` : ''}` : '';
    } catch (e) {
      if (e.name === 'AbortError' || disposed) return;
      errorBox.hidden = false;
      errorBox.textContent = `Cannot list jobs: ${e.message}`;
    }
  }

  load();
  timer = setInterval(() => { if (document.visibilityState === 'visible') load(); }, POLL_MS);
  return () => {
    disposed = true;
    clearInterval(timer);
    if (inflight) inflight.abort();
  };
}
