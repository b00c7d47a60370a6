// playground.js — before and after on a finished causal-LM job.
//
// One prompt (or a chat turn) goes to the base model
// (POST /models/{name}/generate) and to the job's fine-tuned adapter
// (POST /jobs/{id}/generate) at once, with the same settings, and the two
// completions stream side by side token by token. Generation is a POST, so
// the stream is read with fetch (sse.js), not EventSource: events `token`
// ({id, text, index}), then `done` (the JSON reply: text, ids,
// prompt_tokens, completion_tokens, finish_reason, seconds) or `error`
// ({error}). Stop, Escape or leaving the page aborts both requests (the
// daemon sees the connection close). An error — a 4xx naming the field, a
// 503 because the generation queue is full (with Retry-After), a dropped
// connection — is shown in the column it belongs to; the other column goes
// on. Ctrl+Enter (or Cmd+Enter) in the form sends.
import { h, fill, fmtInt, fmtNum, uid } from './util.js';
import { api } from './api.js';
import { postSSE, SSEHttpError } from './sse.js';

const DEFAULTS = { max_new_tokens: 64, temperature: 0, top_p: 1, seed: 42 };
const FINISH_TEXT = { length: 'reached max_new_tokens', eos: 'end of sequence', stop: 'end of sequence' };

/** A labelled number input: [wrap, input]. */
function numberField(id, label, value, attrs, help) {
  const input = h('input', { type: 'number', id, name: id, value: String(value), ...attrs });
  const helpId = help ? uid('help') : null;
  if (helpId) input.setAttribute('aria-describedby', helpId);
  return [h('div', { class: 'field' }, h('label', { for: id }, label), input, help ? h('p', { class: 'help', id: helpId }, help) : null), input];
}

/** One output column: its heading, streamed text, status line and error. */
function column(id, title, sub) {
  const text = h('div', { class: 'pg-text', id: `${id}-text`, 'aria-label': `${title}: completion` });
  const status = h('p', { class: 'pg-status muted', id: `${id}-status`, role: 'status' });
  const error = h('div', { class: 'error-box pg-error', id: `${id}-error`, role: 'alert', hidden: true });
  const el = h('section', { class: 'pg-col', id, 'aria-labelledby': `${id}-title`, dataset: { state: 'idle', tokens: '0' } },
    h('h4', { id: `${id}-title` }, title, h('span', { class: 'muted' }, ` ${sub}`)), text, status, error);
  return {
    el, text, status, error,
    reset() {
      el.dataset.state = 'streaming';
      el.dataset.tokens = '0';
      el.setAttribute('aria-busy', 'true');
      text.textContent = '';
      status.textContent = 'Generating…';
      error.hidden = true;
      error.textContent = '';
    },
    finish(state, line) {
      el.dataset.state = state;
      el.removeAttribute('aria-busy');
      status.textContent = line;
    },
    fail(msg) {
      error.hidden = false;
      error.textContent = msg;
      this.finish('error', '');
    },
  };
}

/** root: the element to fill; jobId: the finished causal_lm job; model: its
 *  base model's name. Returns {setModel(normalised model), dispose()}. */
export function renderPlayground(root, { jobId, model }) {
  let controller = null;
  let disposed = false;

  const mode = h('fieldset', { class: 'segmented', id: 'pg-mode' }, h('legend', null, 'Input'));
  for (const [value, text] of [['prompt', 'Prompt'], ['chat', 'Chat message']]) {
    const r = h('input', { type: 'radio', name: 'pg-mode', value, id: `pg-mode-${value}` });
    r.checked = value === 'prompt';
    r.addEventListener('change', showMode);
    mode.append(h('label', { for: r.id }, r, h('span', null, text)));
  }
  const chatNote = h('p', { class: 'help', id: 'pg-chat-note' });
  const promptLabel = h('label', { for: 'pg-prompt' }, 'Prompt');
  const prompt = h('textarea', { id: 'pg-prompt', rows: 4, required: true, 'aria-describedby': 'pg-keys' });
  const system = h('textarea', { id: 'pg-system', rows: 2 });
  const systemWrap = h('div', { class: 'field', hidden: true },
    h('label', { for: 'pg-system' }, 'System message (optional)'), system);
  const [maxWrap, maxNew] = numberField('pg-max-new-tokens', 'Max new tokens', DEFAULTS.max_new_tokens, { min: 1, max: 4096, step: 1 });
  const [tempWrap, temp] = numberField('pg-temperature', 'Temperature', DEFAULTS.temperature, { min: 0, max: 10, step: 0.1 }, '0: greedy (repeatable)');
  const [topWrap, topP] = numberField('pg-top-p', 'Top-p', DEFAULTS.top_p, { min: 0, max: 1, step: 0.05 });
  const [seedWrap, seed] = numberField('pg-seed', 'Seed', DEFAULTS.seed, { min: 0, step: 1 }, 'the same seed samples the same tokens');
  const send = h('button', { type: 'submit', class: 'primary', id: 'pg-generate' }, 'Generate');
  const stop = h('button', { type: 'button', class: 'secondary', id: 'pg-stop', disabled: true }, 'Stop');
  const formError = h('p', { class: 'field-error', id: 'pg-form-error', role: 'alert', hidden: true });
  const form = h('form', { id: 'playground-form', class: 'pg-form', novalidate: true, 'aria-label': 'Generation prompt and settings' },
    mode, chatNote,
    h('div', { class: 'field' }, promptLabel, prompt),
    systemWrap,
    h('div', { class: 'grid pg-settings' }, maxWrap, tempWrap, topWrap, seedWrap),
    formError,
    h('div', { class: 'form-actions' }, send, stop,
      h('span', { class: 'help', id: 'pg-keys' }, 'Ctrl+Enter sends; Escape stops.')));
  const base = column('pg-base', 'Base model', model);
  const tuned = column('pg-tuned', 'Fine-tuned', `job ${jobId}`);
  fill(root, h('p', { class: 'help' }, 'The same prompt and settings go to the base model and to this job\'s adapter; both completions stream in as they are generated.'),
    form, h('div', { class: 'pg-columns' }, base.el, tuned.el));

  function showMode() {
    const chat = form.querySelector('input[name="pg-mode"]:checked').value === 'chat';
    promptLabel.textContent = chat ? 'User message' : 'Prompt';
    systemWrap.hidden = !chat;
  }

  /** The request body, or an error message. */
  function body() {
    const text = prompt.value;
    if (!text.trim()) return { error: 'Write a prompt first.' };
    const out = {};
    if (form.querySelector('input[name="pg-mode"]:checked').value === 'chat') {
      out.messages = [];
      if (system.value.trim()) out.messages.push({ role: 'system', content: system.value });
      out.messages.push({ role: 'user', content: text });
    } else {
      out.prompt = text;
    }
    for (const [key, input, int] of [['max_new_tokens', maxNew, true], ['temperature', temp, false], ['top_p', topP, false], ['seed', seed, true]]) {
      const v = Number(input.value);
      if (input.value.trim() === '' || !Number.isFinite(v) || (int && !Number.isInteger(v))) {
        return { error: `${key}: "${input.value}" is not ${int ? 'a whole number' : 'a number'}`, input };
      }
      out[key] = v;
    }
    return { body: out };
  }

  function setRunning(running) {
    send.disabled = running;
    stop.disabled = !running;
    root.dataset.running = running ? 'true' : 'false';
  }

  async function stream(col, url, req, signal) {
    col.reset();
    let tokens = 0;
    let ended = false;
    try {
      await postSSE(url, req, {
        headers: api.authHeaders(),
        signal,
        onEvent: (ev) => {
          const d = ev.data;
          if (ev.type === 'token' && d && typeof d === 'object') {
            tokens++;
            col.text.append(document.createTextNode(typeof d.text === 'string' ? d.text : ''));
            col.el.dataset.tokens = String(tokens);   // the status line (a live region) speaks only at start and end
          } else if (ev.type === 'done' || ev.type === 'json') {
            ended = true;
            if (d && typeof d.text === 'string') col.text.textContent = d.text;   // the whole completion, as the daemon decoded it
            if (d && Number.isFinite(d.completion_tokens)) col.el.dataset.tokens = String(d.completion_tokens);
            col.finish('done', summary(d, tokens));
          } else if (ev.type === 'error') {
            ended = true;
            col.fail(d && typeof d === 'object' && d.error ? String(d.error) : String(d || 'generation failed'));
          }
        },
      });
      if (!ended) col.fail('The stream ended before the generation finished (the daemon closed the connection).');
    } catch (e) {
      if (e && e.name === 'AbortError') {
        col.finish('stopped', `Stopped after ${fmtInt(tokens)} tokens.`);
      } else if (e instanceof SSEHttpError) {
        let msg = `${e.message} (HTTP ${e.status})`;
        if (e.status === 404) msg = `${e.message} — this daemon has no generation endpoint here (HTTP 404).`;
        if (e.status === 503 && e.retryAfter !== null) msg += ` Try again in ${e.retryAfter} s.`;
        if (e.status === 401) msg += ' Set the API token (button at the top right).';
        col.fail(msg);
      } else {
        col.fail(`Cannot reach the daemon: ${e && e.message ? e.message : e}`);
      }
    }
  }

  function summary(d, counted) {
    if (!d || typeof d !== 'object') return 'done';
    const n = Number.isFinite(d.completion_tokens) ? d.completion_tokens : counted;
    const parts = [`${fmtInt(n)} tokens`];
    if (Number.isFinite(d.seconds)) parts.push(`in ${fmtNum(d.seconds, 3)} s${d.seconds > 0 ? ` (${fmtNum(n / d.seconds, 3)} tokens/s)` : ''}`);
    if (Number.isFinite(d.prompt_tokens)) parts.push(`prompt ${fmtInt(d.prompt_tokens)} tokens`);
    if (d.finish_reason) parts.push(FINISH_TEXT[d.finish_reason] || String(d.finish_reason));
    return `Done: ${parts.join(' · ')}.`;
  }

  async function generate() {
    if (controller) return;
    formError.hidden = true;
    const b = body();
    if (b.error) {
      formError.hidden = false;
      formError.textContent = b.error;
      (b.input || prompt).focus();
      return;
    }
    controller = new AbortController();
    const { signal } = controller;
    setRunning(true);
    await Promise.all([
      stream(base, api.modelGenerateUrl(model), b.body, signal),
      stream(tuned, api.jobGenerateUrl(jobId), b.body, signal),
    ]);
    controller = null;
    if (!disposed) setRunning(false);
  }

  function abort() {
    if (controller) controller.abort();
  }

  form.addEventListener('submit', (e) => { e.preventDefault(); generate(); });
  stop.addEventListener('click', abort);
  form.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); generate(); }
  });
  // Escape stops from anywhere on the page, while something streams
  const onKey = (e) => { if (e.key === 'Escape' && controller) { e.preventDefault(); abort(); } };
  document.addEventListener('keydown', onKey);
  setRunning(false);

  return {
    /** What GET /models says of the base model: a chat turn needs its chat
     *  template (the same one renders both sides); known absent, the chat
     *  choice is disabled and says why. */
    setModel(mi) {
      const r = form.querySelector('#pg-mode-chat');
      const none = !!mi && mi.chatTemplateKnown && !mi.chatTemplate;
      r.disabled = none;
      if (none && r.checked) { form.querySelector('#pg-mode-prompt').checked = true; showMode(); }
      chatNote.textContent = !mi || !mi.chatTemplateKnown ? ''
        : mi.chatTemplate ? `Chat messages are rendered with the model's chat template (${mi.chatTemplate}).`
          : `${mi.name} has no known chat template${mi.chatTemplateError ? ` (${mi.chatTemplateError})` : ''}: send a plain prompt.`;
    },
    dispose() {
      disposed = true;
      abort();
      document.removeEventListener('keydown', onKey);
    },
  };
}
