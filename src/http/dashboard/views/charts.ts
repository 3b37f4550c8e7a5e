// Charts drawn on the server as SVG: no library, nothing fetched, no script. Colours come from
// CSS classes (style.css "overview"), so dark mode restyles them; text is currentColor. Every
// bucket has a <title> (its numbers on hover), the chart a title and a summary for screen
// readers, and a table of the same numbers sits beside it.
import { html, type Html } from '../html.js';

export interface Series {
  /** The class of its line and swatch: series-<key>. */
  key: string;
  label: string;
  values: number[];
}

export interface LineChart {
  /** Unique on the page: the ids of the title and summary. */
  id: string;
  title: string;
  /** One label per bucket, for the hover titles and the table ("14:05 UTC"). */
  labels: string[];
  /** The labels written under the axis: a few buckets' (index → text). */
  ticks: Map<number, string>;
  series: Series[];
}

const WIDTH = 720;
const HEIGHT = 180;
const LEFT = 44;
const RIGHT = 8;
const TOP = 10;
const BOTTOM = 22;

/** The smallest of 1, 2, 5 × 10^k at or above `value` (at least 1): a readable top of the axis. */
export function niceCeiling(value: number): number {
  if (value <= 1) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

/** 1 234 567: digits grouped by narrow no-break spaces, so a number never wraps in a cell. */
export function count(value: number): string {
  return Math.round(value).toLocaleString('en').replaceAll(',', '\u202f');
}

function round1(value: number): number {
  return Math.round(value * 10) / 10;
}

export function lineChart(chart: LineChart): Html {
  const n = chart.labels.length;
  const top = niceCeiling(Math.max(0, ...chart.series.flatMap((s) => s.values)));
  const plotWidth = WIDTH - LEFT - RIGHT;
  const plotHeight = HEIGHT - TOP - BOTTOM;
  const step = n > 0 ? plotWidth / n : plotWidth;
  // Each value at the middle of its bucket.
  const x = (i: number): number => round1(LEFT + step * (i + 0.5));
  const y = (v: number): number => round1(TOP + plotHeight - (v / top) * plotHeight);
  const totals = chart.series.map((s) => `${count(s.values.reduce((a, b) => a + b, 0))} ${s.label}`).join(', ');
  // Whole numbers only: with a top of 1 or 5 the middle line would read 1 or 3 (rounded).
  const grid = [0, top / 2, top].filter((v) => Number.isInteger(v));
  return html`<figure class="chart" id="${chart.id}">
<svg viewBox="0 0 ${WIDTH} ${HEIGHT}" role="img" aria-labelledby="${chart.id}-title ${chart.id}-desc" class="chart-svg">
<title id="${chart.id}-title">${chart.title}</title>
<desc id="${chart.id}-desc">In all: ${totals}. The most in one bucket: ${count(Math.max(0, ...chart.series.flatMap((s) => s.values)))}.</desc>
<g class="grid">${grid.map((v) => html`<line x1="${LEFT}" x2="${WIDTH - RIGHT}" y1="${y(v)}" y2="${y(v)}"></line><text x="${LEFT - 6}" y="${y(v) + 4}" text-anchor="end">${count(v)}</text>`)}</g>
<g class="ticks">${[...chart.ticks].map(([i, text]) => html`<text x="${x(i)}" y="${HEIGHT - 6}" text-anchor="${x(i) > WIDTH - RIGHT - 20 ? 'end' : 'middle'}">${text}</text>`)}</g>
${chart.series.map((s) => html`<polyline class="line series-${s.key}" points="${s.values.map((v, i) => `${x(i)},${y(v)}`).join(' ')}"></polyline>`)}
<g class="buckets">${chart.labels.map((label, i) => html`<rect x="${round1(LEFT + step * i)}" y="${TOP}" width="${round1(step)}" height="${plotHeight}" data-bucket="${i}"><title>${label}: ${chart.series.map((s) => `${count(s.values[i] ?? 0)} ${s.label}`).join(', ')}</title></rect>`)}</g>
</svg>
<figcaption>${chart.title}: ${chart.series.map((s) => html`<span class="legend"><span class="swatch series-${s.key}"></span>${s.label} <b data-total="${s.key}">${count(s.values.reduce((a, b) => a + b, 0))}</b></span>`)}</figcaption>
<details class="chart-numbers"><summary>numbers</summary>
<table><thead><tr><th>from</th>${chart.series.map((s) => html`<th>${s.label}</th>`)}</tr></thead>
<tbody>${chart.labels.map((label, i) => html`<tr><td>${label}</td>${chart.series.map((s) => html`<td>${count(s.values[i] ?? 0)}</td>`)}</tr>`)}</tbody></table>
</details>
</figure>`;
}

/** A horizontal bar in a table cell, its length a share of the largest: p95 beside p50. */
export function bar(value: number, max: number, title: string): Html {
  const width = max > 0 ? round1((value / max) * 100) : 0;
  return html`<svg class="bar" viewBox="0 0 100 8" preserveAspectRatio="none" role="img" aria-label="${title}"><title>${title}</title><rect x="0" y="0" width="${width}" height="8"></rect></svg>`;
}
