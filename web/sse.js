// sse.js — server-sent events over fetch().
//
// EventSource can only GET and cannot send headers, but generation is a
// POST with a JSON body (and maybe an Authorization header) answered with
// `text/event-stream`. This module reads such a response body itself.
//
// SSEParser is the text/event-stream grammar (WHATWG HTML, "Parsing an
// event stream"), fed chunk by chunk: lines end in LF, CR or CRLF (a CRLF
// split across two chunks counts once); "field: value" with one optional
// space after the colon; data lines of one event are joined with LF; a
// blank line dispatches; lines starting with ":" are comments; an event
// with no data is not dispatched; a missing event name is "message".
// postSSE() POSTs, checks the answer, and feeds the body to a parser; the
// caller's AbortSignal stops it (Stop button, leaving the page).

export class SSEParser {
  /** onEvent({type, data, id}) for every dispatched event. */
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buf = '';
    this.skipLF = false;     // the last chunk ended in CR: a leading LF belongs to it
    this.reset();
    this.lastId = '';
  }

  reset() {
    this.type = '';
    this.data = [];
    this.hasData = false;
  }

  /** Feed decoded text. */
  push(text) {
    let s = text;
    if (this.skipLF && s.startsWith('\n')) s = s.slice(1);
    this.skipLF = false;
    this.buf += s;
    let start = 0;
    for (let i = 0; i < this.buf.length; i++) {
      const c = this.buf[i];
      if (c !== '\n' && c !== '\r') continue;
      this.line(this.buf.slice(start, i));
      if (c === '\r') {
        if (i + 1 === this.buf.length) this.skipLF = true;
        else if (this.buf[i + 1] === '\n') i++;
      }
      start = i + 1;
    }
    this.buf = this.buf.slice(start);
  }

  /** The stream ended: an unterminated last event is dropped (as the spec says). */
  end() {
    this.buf = '';
    this.reset();
  }

  line(l) {
    if (l === '') {
      if (this.hasData) this.onEvent({ type: this.type || 'message', data: this.data.join('\n'), id: this.lastId });
      this.reset();
      return;
    }
    if (l.startsWith(':')) return;
    const colon = l.indexOf(':');
    const field = colon < 0 ? l : l.slice(0, colon);
    let value = colon < 0 ? '' : l.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') this.type = value;
    else if (field === 'data') { this.data.push(value); this.hasData = true; }
    else if (field === 'id' && !value.includes('\0')) this.lastId = value;
    // "retry" and unknown fields: nothing to do for a one-shot stream
  }
}

/** An HTTP answer that was not a stream: status, message, Retry-After seconds. */
export class SSEHttpError extends Error {
  constructor(status, message, retryAfter) {
    super(message);
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

/** The message of an error body: {"error": "text"} or {"error": {"message"}}. */
export function errorMessage(data, fallback) {
  const e = data && data.error;
  if (typeof e === 'string' && e) return e;
  if (e && typeof e === 'object' && typeof e.message === 'string') return e.field && !e.message.includes(e.field) ? `${e.field}: ${e.message}` : e.message;
  return fallback;
}

/**
 * POST `body` (JSON) to url asking for text/event-stream; onEvent(ev) for
 * each event, ev.data parsed as JSON when it is JSON. Resolves when the body
 * ends; rejects with SSEHttpError on a non-2xx answer, or AbortError when
 * `signal` aborts. A server that answers plain JSON instead of a stream is
 * handed over as one {type: 'json', data} event.
 */
export async function postSSE(url, body, { headers = {}, signal, onEvent } = {}) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'text/event-stream', ...headers },
    body: JSON.stringify(body),
    signal,
  });
  const type = res.headers.get('Content-Type') || '';
  if (!res.ok) {
    const text = await res.text();
    let data = null;
    try { data = JSON.parse(text); } catch { /* not JSON */ }
    const ra = Number(res.headers.get('Retry-After'));
    throw new SSEHttpError(res.status, errorMessage(data, text.slice(0, 300) || `HTTP ${res.status} ${res.statusText}`),
      Number.isFinite(ra) && ra >= 0 ? ra : null);
  }
  if (!type.includes('text/event-stream')) {
    const text = await res.text();
    let data = null;
    try { data = JSON.parse(text); } catch { data = text; }
    onEvent({ type: 'json', data, id: '' });
    return;
  }
  const parser = new SSEParser((ev) => {
    let data = ev.data;
    try { data = JSON.parse(ev.data); } catch { /* leave it text */ }
    onEvent({ ...ev, data });
  });
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  // aborting the fetch errors the pending read; cancel also releases the socket
  const onAbort = () => { reader.cancel().catch(() => {}); };
  if (signal) signal.addEventListener('abort', onAbort, { once: true });
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      parser.push(dec.decode(value, { stream: true }));
    }
    parser.push(dec.decode());
    parser.end();
  } finally {
    if (signal) signal.removeEventListener('abort', onAbort);
  }
  if (signal && signal.aborted) throw new DOMException('aborted', 'AbortError');
}
