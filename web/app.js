// app.js — entry point of the dashboard: the hash router, the header, and
// the API-token dialog.
//
// Routes live in the URL fragment so that the daemon serves one static
// index.html and every view can be bookmarked or reloaded:
//   #/                 jobs list (?status=running&offset=25)
//   #/new              new-job form
//   #/jobs/<id>        one job, live
// Each view is a function render(root, ...) that returns a dispose function;
// the router calls it before mounting the next view (closing event streams
// and timers).
import { h, clear } from './util.js';
import { getToken, setToken } from './api.js';
import { renderJobs } from './jobs.js';
import { renderNewJob } from './newjob.js';
import { renderJobDetail } from './jobdetail.js';

const main = document.getElementById('main');
let dispose = null;

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const [path, query = ''] = raw.split('?');
  return { path, params: new URLSearchParams(query) };
}

function route() {
  if (dispose) { try { dispose(); } catch { /* a view failing to clean up must not block the next */ } }
  dispose = null;
  clear(main);
  const { path, params } = parseHash();
  let m;
  let nav = 'jobs';
  if (path === '/' || path === '' || path === '/jobs') {
    dispose = renderJobs(main, params);
    document.title = 'Jobs · aflorad';
  } else if (path === '/new') {
    nav = 'new';
    dispose = renderNewJob(main);
    document.title = 'New job · aflorad';
  } else if ((m = path.match(/^\/jobs\/([A-Za-z0-9_-]+)$/))) {
    dispose = renderJobDetail(main, m[1]);
    document.title = `Job ${m[1]} · aflorad`;
  } else {
    main.append(h('section', { class: 'panel' }, h('h2', { tabindex: -1 }, 'Not found'),
      h('p', null, 'No such page. ', h('a', { href: '#/' }, 'Go to the jobs.'))));
    main.querySelector('h2').focus();
  }
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (a.dataset.nav === nav) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

// ---- API token ------------------------------------------------------------------
const dialog = document.getElementById('token-dialog');
const tokenInput = document.getElementById('token-input');
const tokenButton = document.getElementById('token-button');

function showTokenState() {
  tokenButton.textContent = getToken() ? 'API token ✓' : 'API token';
}

tokenButton.addEventListener('click', () => {
  tokenInput.value = getToken();
  if (typeof dialog.showModal === 'function') dialog.showModal();
  else dialog.setAttribute('open', '');
  tokenInput.focus();
});
dialog.addEventListener('close', () => {
  if (dialog.returnValue === 'save') setToken(tokenInput.value.trim());
  if (dialog.returnValue === 'clear') setToken('');
  showTokenState();
  window.dispatchEvent(new Event('aflorad:token'));   // views that show it (the curl form) refresh
  tokenButton.focus();
});

window.addEventListener('hashchange', route);
showTokenState();
route();
