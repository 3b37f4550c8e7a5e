// Keeps the dashboard's live parts current: one EventSource (server-sent events) from /events;
// each event says what may have changed, and the parts it concerns fetch themselves again.
// Nothing here runs on a timer: without events, nothing is fetched.
'use strict';

(() => {
  const liveState = document.getElementById('live-state');
  const setState = (text, state) => {
    document.documentElement.dataset.live = state;
    if (liveState) liveState.textContent = text;
  };

  /** One fetch at a time per element; events that come meanwhile fold into one more. */
  const running = new WeakMap();
  function once(element, work) {
    let run = running.get(element);
    if (run) {
      run.again = true;
      return;
    }
    run = { again: false };
    running.set(element, run);
    (async () => {
      try {
        do {
          run.again = false;
          await work();
          // A part that is costly to read (the groups page counts every task) is read at most
          // this often while events keep coming: they fold into one read after the pause.
          const pause = Number(element.dataset.minInterval || 0);
          if (run.again && pause > 0) await new Promise((resolve) => setTimeout(resolve, pause));
        } while (run.again);
      } catch (error) {
        console.warn('pg-tasks dashboard: refresh failed', error);
      } finally {
        running.delete(element);
      }
    })();
  }

  /** A live part: its fragment fetched again and put in place. */
  function refresh(section) {
    once(section, async () => {
      const response = await fetch(section.dataset.src, { credentials: 'same-origin', cache: 'no-store' });
      if (!response.ok) return;
      section.innerHTML = await response.text();
      section.dataset.refreshed = String(Number(section.dataset.refreshed || 0) + 1);
      followLatestRun();
    });
  }

  // ---- output: appended chunk by chunk, decoded as one UTF-8 stream ----
  const outputs = new WeakMap();
  function outputState(pre) {
    let state = outputs.get(pre);
    if (!state) {
      state = { after: -1, expected: 0, decoder: new TextDecoder('utf-8') };
      outputs.set(pre, state);
    }
    return state;
  }

  function note(pre, text) {
    const span = document.createElement('span');
    span.className = 'output-note';
    span.textContent = text;
    pre.append(span);
  }

  function pullOutput(pre) {
    if (pre.dataset.attempt === '0') return;
    once(pre, async () => {
      for (;;) {
        const state = outputState(pre);
        const url = `/tasks/${pre.dataset.task}/output?attempt=${pre.dataset.attempt}&after=${state.after}`;
        const response = await fetch(url, { credentials: 'same-origin', cache: 'no-store' });
        if (!response.ok) return;
        const { chunks, more } = await response.json();
        for (const chunk of chunks) {
          // Chunks older than the node keeps were deleted before they were read.
          if (chunk.pos > state.expected) {
            note(pre, state.after === -1 ? `[… ${chunk.pos} earlier bytes not kept]\n` : `\n[… ${chunk.pos - state.expected} bytes not kept]\n`);
          }
          const bytes = Uint8Array.from(atob(chunk.data), (c) => c.charCodeAt(0));
          pre.append(state.decoder.decode(bytes, { stream: true }));
          state.after = chunk.seq;
          state.expected = chunk.pos + bytes.length;
        }
        pre.dataset.seq = String(state.after);
        if (!more) return;
      }
    });
  }

  /** Following the latest run: when a new run starts, its output replaces the last one's. */
  function followLatestRun() {
    const pre = document.getElementById('output');
    const summary = document.querySelector('[data-latest-attempt]');
    if (!pre || !summary || pre.dataset.follow !== 'latest') return;
    const latest = summary.dataset.latestAttempt;
    if (latest === pre.dataset.attempt) return;
    pre.dataset.attempt = latest;
    pre.textContent = '';
    outputs.delete(pre);
    document.getElementById('no-output')?.remove();
    pullOutput(pre);
  }

  // ---- events ----
  const sections = (kind) => [...document.querySelectorAll('[data-live]')].filter((s) => s.dataset.live.split(' ').includes(kind));
  const concerns = (element, data) => {
    const task = element.dataset.task;
    if (!task) return true;
    if (data.ids) return data.ids.includes(Number(task));
    return data.g === undefined || element.dataset.group === undefined || Number(element.dataset.group) === data.g;
  };
  const refreshAll = () => {
    document.querySelectorAll('[data-live]').forEach(refresh);
    document.querySelectorAll('pre.output[data-task]').forEach(pullOutput);
  };

  const events = new EventSource('/events');
  events.addEventListener('open', () => {
    setState('live', 'open');
    // What changed between the page's render and now (or while the stream was down) was
    // announced to nobody: read it all again, once.
    refreshAll();
  });
  events.addEventListener('error', () => setState('reconnecting…', 'closed'));
  events.addEventListener('tasks', (event) => {
    const data = JSON.parse(event.data);
    for (const section of sections('tasks')) if (concerns(section, data)) refresh(section);
  });
  events.addEventListener('workers', () => sections('workers').forEach(refresh));
  events.addEventListener('output', (event) => {
    const data = JSON.parse(event.data);
    for (const section of sections('output')) if (concerns(section, data)) refresh(section);
    for (const pre of document.querySelectorAll('pre.output[data-task]')) if (concerns(pre, data)) pullOutput(pre);
  });
  events.addEventListener('resync', refreshAll);
})();
