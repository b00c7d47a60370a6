// events.js — follow one job's server-sent events.
//
// The browser's EventSource does the reconnecting: after a dropped
// connection it reconnects by itself and sends the id of the last event it
// saw as Last-Event-ID, and the daemon replays what was missed. Two things
// are left to us:
//  * the daemon ends the stream after the terminal status; EventSource would
//    take that for a drop and reconnect forever, so we close it ourselves
//    when a terminal `status` event arrives;
//  * a replay may overlap what we already have, so events whose id is not
//    above the last one seen are dropped (nothing is applied twice).
// If the stream cannot be opened at all (EventSource gives up on a non-200
// answer), the caller is told through onConnection('closed') and can poll.
import { api, parseStep, parseFreeze, parseEval, parseStatus, parseLog, TERMINAL } from './api.js';

const PARSERS = { step: parseStep, freeze: parseFreeze, eval: parseEval, status: parseStatus, log: parseLog };

/**
 * handlers: {step, freeze, eval, status, log}(parsed, id), onConnection(state)
 * with state 'open' | 'reconnecting' | 'closed' | 'ended', and
 * onApplied(count, id) after every event applied (count: events so far).
 * Returns {close()}.
 */
export function followJobEvents(jobId, handlers) {
  let lastId = 0;
  let applied = 0;
  let done = false;
  const es = new EventSource(api.eventsUrl(jobId));
  const conn = (s) => handlers.onConnection && handlers.onConnection(s);

  const finish = (state) => {
    if (done) return;
    done = true;
    es.close();
    conn(state);
  };

  for (const [type, parse] of Object.entries(PARSERS)) {
    es.addEventListener(type, (ev) => {
      if (done) return;
      const id = Number(ev.lastEventId);
      if (Number.isFinite(id) && id > 0) {
        if (id <= lastId) return;           // replayed after a reconnect: already applied
        lastId = id;
      }
      let data;
      try { data = JSON.parse(ev.data); } catch { return; }
      const h = handlers[type];
      if (h) h(parse(data), id);
      applied++;
      if (handlers.onApplied) handlers.onApplied(applied, id);
      if (type === 'status' && TERMINAL.has(data.status)) finish('ended');
    });
  }
  es.addEventListener('open', () => conn('open'));
  es.addEventListener('error', () => {
    if (done) return;
    if (es.readyState === EventSource.CLOSED) finish('closed');
    else conn('reconnecting');
  });
  return { close: () => finish('ended'), get lastId() { return lastId; } };
}
