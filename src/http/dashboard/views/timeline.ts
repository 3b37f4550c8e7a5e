// A page of a task's runs as bars over time (SVG drawn on the server), each coloured by its end
// reason and linking to its output, with a legend that names each colour and counts its runs.
import type { EndReason } from '../../../client/types.js';
import type { RunRow } from '../../../sql/queries/taskpage.js';
import { html, when, type Html } from '../html.js';
import { formatDuration } from './units.js';

const WIDTH = 900;
const HEIGHT = 48;
const BAR_TOP = 4;
const BAR_HEIGHT = 22;
/** A run shorter than a pixel is still drawn, 2 px wide: 10 000 one-second runs a day all show. */
const MIN_BAR = 2;
const TICKS = 5;

/** Words for the legend; a live run has no end reason yet. */
const REASON_WORDS: Record<EndReason | 'running', string> = {
  running: 'running', completed: 'completed', exit_code: 'exit code', signal: 'signal', spawn_error: 'spawn error', cancelled: 'cancelled',
  timeout: 'timeout', worker_failed: 'worker failed', lost: 'lost', node_stopped: 'node stopped', dependency: 'dependency',
  refused: 'refused', oom: 'out of memory', result_rejected: 'result rejected', lost_claim: 'lost claim', heartbeat: 'no heartbeat',
};

/** `link(attempt)`: the page that shows that run's output. */
export function runTimeline(runs: RunRow[], link: (attempt: number) => string): Html {
  if (runs.length === 0) return html``;
  const ends = runs.map((r) => r.started.getTime() + r.duration_ms);
  const start = Math.min(...runs.map((r) => r.started.getTime()));
  const end = Math.max(...ends);
  // A span of at least a second: one instant run still gets a readable axis.
  const span = Math.max(end - start, 1000);
  const x = (t: number): number => ((t - start) / span) * (WIDTH - 2) + 1;
  const counts = new Map<EndReason | 'running', number>();
  for (const r of runs) {
    const reason = r.end_reason ?? 'running';
    counts.set(reason, (counts.get(reason) ?? 0) + 1);
  }
  const ticks = Array.from({ length: TICKS }, (_, i) => start + (span * i) / (TICKS - 1));
  return html`<div class="timeline-scroll">
<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" role="group" aria-label="runs ${runs[runs.length - 1]!.attempt} to ${runs[0]!.attempt} over time">
<line class="axis" x1="0" y1="${BAR_TOP + BAR_HEIGHT + 2}" x2="${WIDTH}" y2="${BAR_TOP + BAR_HEIGHT + 2}"/>
${ticks.map((t, i) => html`<text class="tick" x="${x(t).toFixed(1)}" y="${HEIGHT - 4}" text-anchor="${i === 0 ? 'start' : i === TICKS - 1 ? 'end' : 'middle'}">${tickLabel(t, span)}</text>`)}
${runs.map((r) => {
    const reason = r.end_reason ?? 'running';
    const left = x(r.started.getTime());
    const width = Math.max(MIN_BAR, x(r.started.getTime() + r.duration_ms) - left);
    return html`<a href="${link(r.attempt)}" class="run r-${reason}" data-attempt="${r.attempt}"><title>run ${r.attempt}: ${REASON_WORDS[reason]}, ${formatDuration(r.duration_ms)}, started ${when(r.started)}</title><rect x="${left.toFixed(1)}" y="${BAR_TOP}" width="${width.toFixed(1)}" height="${BAR_HEIGHT}"/></a>`;
  })}
</svg>
</div>
<ul class="run-legend">${[...counts].map(([reason, n]) => html`<li data-reason="${reason}"><span class="swatch r-${reason}"></span>${REASON_WORDS[reason]} <small>(${n})</small></li>`)}</ul>`;
}

/** A tick's time in UTC: to the second within a day, else the day and minute. */
function tickLabel(ms: number, span: number): string {
  const iso = new Date(ms).toISOString();
  return span < 86_400_000 ? iso.slice(11, 19) : `${iso.slice(5, 10)} ${iso.slice(11, 16)}`;
}
