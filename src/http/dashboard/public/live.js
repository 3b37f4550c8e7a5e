// Keeps the dashboard's pages current from one EventSource (server-sent events, /events):
// - a task page subscribes with ?task=ID; its events carry what changed (the summary fields,
//   the output's new bytes with their run), and the page patches those in place: no request
//   while it only follows a run;
// - a list (tasks, workers, schedules, groups) reads its table again on an event that concerns
//   it and patches only the rows that differ, so focus, selection and open details stay.
// Nothing here runs on a timer: without events, nothing is fetched.
'use strict';

(() => {
  const root = document.documentElement;
  const liveState = document.getElementById('live-state');
  const setState = (text, state) => {
    // The stream's state is the <html> element's data-live (tests and styles read it); the live
    // parts are the elements with data-src, never <html> itself.
    root.dataset.live = state;
    if (liveState) liveState.textContent = text;
  };

  /** One run at a time per element; requests that come meanwhile fold into one more. */
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

  // ---- patching: the new markup merged into the old, node by node ----
  // A node that did not change is kept as it is (focus, selection, an open <details>); rows
  // are matched by their key (data-id, data-worker, data-group, id), so a new row is inserted
  // without touching the others.
  const keyOf = (node) => (node.nodeType === 1 ? node.dataset.id || node.dataset.worker || node.dataset.group || node.id || null : null);
  const sameKind = (a, b) => a.nodeType === b.nodeType && a.nodeName === b.nodeName && keyOf(a) === keyOf(b);

  function patchAttributes(from, to) {
    for (const { name } of [...from.attributes]) if (!to.hasAttribute(name)) from.removeAttribute(name);
    for (const { name, value } of [...to.attributes]) if (from.getAttribute(name) !== value) from.setAttribute(name, value);
  }

  function patchChildren(from, to) {
    let current = from.firstChild;
    for (const next of [...to.childNodes]) {
      let match = null;
      if (keyOf(next) !== null) {
        for (let c = current; c; c = c.nextSibling) if (sameKind(c, next)) { match = c; break; }
      } else if (current) {
        // The markup's whitespace between elements differs between a page and its fragment
        // (the page's section opens with a newline): an element is matched past it, and the
        // whitespace removed, never the element moved or replaced (that would drop the focus).
        let c = current;
        if (next.nodeType === 1) while (c && c.nodeType === 3 && c.nodeValue.trim() === '') c = c.nextSibling;
        if (c && sameKind(c, next)) {
          while (current !== c) {
            const after = current.nextSibling;
            current.remove();
            current = after;
          }
          match = c;
        }
      }
      if (!match) {
        from.insertBefore(next, current);
        continue;
      }
      if (match === current) current = current.nextSibling;
      else from.insertBefore(match, current);
      if (match.nodeType !== 1) {
        if (match.nodeValue !== next.nodeValue) match.nodeValue = next.nodeValue;
      } else if (!match.isEqualNode(next)) {
        // An open "show all" stays open: <details open> is the reader's, not the server's.
        const open = match.nodeName === 'DETAILS' && match.open;
        patchAttributes(match, next);
        if (open) match.open = true;
        patchChildren(match, next);
      }
    }
    while (current) {
      const after = current.nextSibling;
      current.remove();
      current = after;
    }
  }

  function patchHtml(element, markup) {
    const template = document.createElement('template');
    template.innerHTML = markup;
    patchChildren(element, template.content);
  }

  /** A list: its fragment read again and patched in. */
  function refresh(section) {
    once(section, async () => {
      const response = await fetch(section.dataset.src, { credentials: 'same-origin', cache: 'no-store' });
      if (!response.ok) return;
      patchHtml(section, await response.text());
      section.dataset.refreshed = String(Number(section.dataset.refreshed || 0) + 1);
    });
  }

  // ---- ANSI escape codes: SGR colours become spans with classes, everything else goes ----
  // The text only ever becomes text nodes (never markup), so output cannot inject HTML.
  // eslint-disable-next-line no-control-regex
  const ESCAPE = /\x1b(?:\[([0-?]*)[ -/]*([@-~])|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])|[\x00-\x08\x0b-\x1f\x7f]/g;
  // An escape sequence cut at the end of a chunk: kept for the next one (at most this long).
  // eslint-disable-next-line no-control-regex
  const CUT = /\x1b(?:\[[0-?]*[ -/]*|\][^\x07\x1b]*\x1b?)?$/;
  const MAX_CUT = 256;

  function applySgr(style, params) {
    const codes = params === '' ? [0] : params.split(';').map((p) => Number(p) || 0);
    for (let i = 0; i < codes.length; i++) {
      const code = codes[i];
      if (code === 0) { style.fg = null; style.bg = null; style.bold = false; style.dim = false; style.italic = false; style.underline = false; }
      else if (code === 1) style.bold = true;
      else if (code === 2) style.dim = true;
      else if (code === 3) style.italic = true;
      else if (code === 4) style.underline = true;
      else if (code === 22) { style.bold = false; style.dim = false; }
      else if (code === 23) style.italic = false;
      else if (code === 24) style.underline = false;
      else if (code >= 30 && code <= 37) style.fg = code - 30;
      else if (code >= 90 && code <= 97) style.fg = code - 90 + 8;
      else if (code === 39) style.fg = null;
      else if (code >= 40 && code <= 47) style.bg = code - 40;
      else if (code >= 100 && code <= 107) style.bg = code - 100 + 8;
      else if (code === 49) style.bg = null;
      // 38;5;n and 38;2;r;g;b (256 and true colours): the nearest of the 16 is not worth its
      // code here; the colour is dropped, its parameters skipped.
      else if (code === 38 || code === 48) i += codes[i + 1] === 5 ? 2 : codes[i + 1] === 2 ? 4 : 1;
    }
  }

  function styleClass(style) {
    const names = [];
    if (style.fg !== null) names.push(`ansi-fg-${style.fg}`);
    if (style.bg !== null) names.push(`ansi-bg-${style.bg}`);
    if (style.bold) names.push('ansi-bold');
    if (style.dim) names.push('ansi-dim');
    if (style.italic) names.push('ansi-italic');
    if (style.underline) names.push('ansi-underline');
    return names.join(' ');
  }

  function appendText(pre, style, text) {
    if (text === '') return;
    const names = styleClass(style);
    if (names === '') {
      pre.append(text);
      return;
    }
    const span = document.createElement('span');
    span.className = names;
    span.textContent = text;
    pre.append(span);
  }

  /** Appends decoded text to an output, its colours as classes. */
  function appendAnsi(pre, state, text) {
    text = state.cut + text;
    state.cut = '';
    const cut = CUT.exec(text);
    if (cut && cut[0] !== '' && cut[0].length <= MAX_CUT) {
      state.cut = cut[0];
      text = text.slice(0, cut.index);
    }
    let last = 0;
    for (const match of text.matchAll(ESCAPE)) {
      appendText(pre, state.style, text.slice(last, match.index));
      if (match[2] === 'm') applySgr(state.style, match[1]);
      last = match.index + match[0].length;
    }
    appendText(pre, state.style, text.slice(last));
  }

  // ---- output: appended chunk by chunk, decoded as one UTF-8 stream ----
  const outputs = new WeakMap();
  function outputState(pre) {
    let state = outputs.get(pre);
    if (!state) {
      state = {
        after: -1, expected: 0, decoder: new TextDecoder('utf-8'), cut: '',
        style: { fg: null, bg: null, bold: false, dim: false, italic: false, underline: false },
      };
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

  /** Whether the reader is at the end of the output (then it follows what is appended). */
  const atTail = (pre) => pre.scrollHeight - pre.scrollTop - pre.clientHeight < 24;

  /** Appends chunks in order: false when one is missing before them (then the page reads them). */
  function appendChunks(pre, chunks) {
    const state = outputState(pre);
    const follow = atTail(pre);
    let complete = true;
    for (const chunk of chunks) {
      if (chunk.seq <= state.after) continue;
      // Bytes missing before this chunk: the page reads them (or learns they were not kept).
      if (chunk.pos > state.expected) {
        complete = false;
        break;
      }
      const bytes = Uint8Array.from(atob(chunk.data), (c) => c.charCodeAt(0));
      appendAnsi(pre, state, state.decoder.decode(bytes, { stream: true }));
      state.after = chunk.seq;
      state.expected = chunk.pos + bytes.length;
    }
    pre.dataset.seq = String(state.after);
    if (follow) pre.scrollTop = pre.scrollHeight;
    return complete;
  }

  /** Reads the run's output from where the page is (GET …/output): at open, and after a gap. */
  function pullOutput(pre) {
    if (pre.dataset.attempt === '0') return;
    once(pre, async () => {
      for (;;) {
        const state = outputState(pre);
        const url = `/tasks/${pre.dataset.task}/output?attempt=${pre.dataset.attempt}&after=${state.after}`;
        const response = await fetch(url, { credentials: 'same-origin', cache: 'no-store' });
        if (!response.ok) return;
        const { chunks, more } = await response.json();
        const follow = atTail(pre);
        for (const chunk of chunks) {
          if (chunk.seq <= state.after) continue;
          // Chunks older than the node keeps were deleted before they were read.
          if (chunk.pos > state.expected) {
            note(pre, state.after === -1 ? `[… ${chunk.pos} earlier bytes not kept]\n` : `\n[… ${chunk.pos - state.expected} bytes not kept]\n`);
            state.expected = chunk.pos;
          }
          appendChunks(pre, [chunk]);
        }
        pre.dataset.seq = String(state.after);
        if (follow) pre.scrollTop = pre.scrollHeight;
        if (!more) return;
      }
    });
  }

  /** Shows run `attempt` in the output (a page following the latest run, when a new one starts). */
  function showRun(pre, attempt) {
    pre.dataset.attempt = String(attempt);
    pre.textContent = '';
    outputs.delete(pre);
    document.getElementById('no-output')?.remove();
    const label = document.getElementById('output-run');
    if (label) label.textContent = `run ${attempt}`;
    const raw = document.getElementById('output-raw');
    if (raw) raw.href = `/tasks/${pre.dataset.task}/output.txt?attempt=${attempt}`;
    else if (label) {
      const link = document.createElement('a');
      link.id = 'output-raw';
      link.className = 'raw';
      link.href = `/tasks/${pre.dataset.task}/output.txt?attempt=${attempt}`;
      link.setAttribute('download', '');
      link.textContent = 'raw text';
      label.after(' ', link);
    }
  }

  const outputPre = () => document.querySelector('pre.output[data-task]');
  const following = (pre) => pre && pre.dataset.follow === 'latest';

  // ---- a task page's events ----
  const watched = document.querySelector('[data-watch-task]');
  const ENDED = ['CS', 'CF', 'CC'];

  function onTask(data) {
    if (!watched || String(data.id) !== watched.dataset.watchTask) return;
    for (const [name, markup] of Object.entries(data.fields)) {
      const field = name === 'error' ? document.getElementById('task-error') : watched.querySelector(`dd[data-field="${window.CSS.escape(name)}"]`);
      if (field) patchHtml(field, markup);
    }
    // The runs table: read again when a run starts or ends, not on every line printed.
    const summary = watched.querySelector('[data-latest-attempt]');
    if (summary) {
      const before = `${summary.dataset.latestAttempt}:${summary.dataset.state}:${summary.dataset.liveRun}`;
      summary.dataset.latestAttempt = String(data.attempt);
      summary.dataset.state = data.state;
      summary.dataset.liveRun = String(data.live);
      if (before !== `${data.attempt}:${data.state}:${data.live}`) {
        document.querySelectorAll('[data-live~="task-run"]').forEach(refresh);
        // A run that ended: its last bytes are read, should an event have missed some.
        const pre = outputPre();
        if (pre && !data.live && pre.dataset.attempt === String(data.attempt)) pullOutput(pre);
      }
    }
    const pre = outputPre();
    if (following(pre) && String(data.attempt) !== pre.dataset.attempt && data.attempt > 0) {
      showRun(pre, data.attempt);
      pullOutput(pre);
    }
    // "task 12: cancelling …" is over once the task has ended.
    const notice = document.querySelector(`p.notice[data-cancelling="${window.CSS.escape(String(data.id))}"]`);
    if (notice && ENDED.includes(data.state)) {
      notice.textContent = `task ${data.id}: ${data.state === 'CC' ? 'cancelled' : `ended (${data.state}) before its cancel took effect`}`;
      notice.removeAttribute('data-cancelling');
    }
  }

  function onOutput(data) {
    const pre = outputPre();
    if (!pre || String(data.id) !== pre.dataset.task) return;
    if (following(pre) && data.attempt > Number(pre.dataset.attempt)) showRun(pre, data.attempt);
    if (String(data.attempt) !== pre.dataset.attempt) return;
    if (running.has(pre) || !appendChunks(pre, data.chunks) || data.more) pullOutput(pre);
  }

  // ---- lists ----
  const sections = (kind) => [...document.querySelectorAll('[data-src][data-live]')].filter((s) => s.dataset.live.split(' ').includes(kind));
  const concerns = (element, data) => {
    if (data.g !== undefined && element.dataset.group !== undefined && Number(element.dataset.group) !== data.g) return false;
    if (!data.ids || element.id !== 'task-list') return true;
    // Tasks that ended: the list changes if it shows one of them, or if an ended task may join
    // it (a filter on an ended state, or on text: the error is new). Else it is not read again.
    if (data.ids.some((id) => element.querySelector(`tr[data-id="${id}"]`))) return true;
    const filter = new URL(element.dataset.src, window.location.href).searchParams;
    return (filter.get('state') || '').startsWith('C') || Boolean(filter.get('q'));
  };

  const url = watched ? `/events?task=${encodeURIComponent(watched.dataset.watchTask)}` : '/events';
  const events = new EventSource(url);
  events.addEventListener('open', () => {
    setState('live', 'open');
    // What changed between the page's render and now (or while the stream was down) was
    // announced to nobody: the lists read again, once; a task page is sent its fields on
    // subscribing, and reads the output it has not got.
    sections('tasks').concat(sections('workers')).forEach(refresh);
    const pre = outputPre();
    if (pre) pullOutput(pre);
  });
  // A stream refused (503: too many open, or any other status) is closed for good: the browser
  // does not retry it, so the page says so rather than "reconnecting…" forever.
  events.addEventListener('error', () => {
    if (events.readyState === EventSource.CLOSED) setState('not live (reload to retry)', 'refused');
    else setState('reconnecting…', 'closed');
  });
  events.addEventListener('tasks', (event) => {
    const data = JSON.parse(event.data);
    for (const section of sections('tasks')) if (concerns(section, data)) refresh(section);
  });
  events.addEventListener('workers', () => sections('workers').forEach(refresh));
  events.addEventListener('task', (event) => onTask(JSON.parse(event.data)));
  events.addEventListener('output', (event) => onOutput(JSON.parse(event.data)));
  events.addEventListener('resync', () => sections('tasks').concat(sections('workers')).forEach(refresh));
})();
