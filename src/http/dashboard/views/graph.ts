// A task's dependency graph as SVG drawn on the server (no library, nothing from elsewhere):
// each task a box that links to its page, saying its state in words as well as in colour, its
// command and the rule it runs by; an arrow from each prerequisite to the task that waits
// for it, drawn by that task's rule. Bounded: a few levels each way and a few dozen tasks,
// with "N more" on each task whose neighbours were not all drawn.
import { DEPENDS_RULE_WORDS, TASK_STATES, type DependsRule } from '../../../client/types.js';
import { html, type Html } from '../html.js';
import type { GraphBounds, GraphNode } from '../store.js';
import { layoutGraph, NODE_HEIGHT, NODE_WIDTH, type PlacedNode } from './graph-layout.js';
import { page, type PageContext } from './layout.js';

/**
 * Around a task: 3 levels each way, the 50 nearest tasks; 20 neighbours read per task, so one
 * wide fan (a task with 1 000 dependents) does not crowd out the levels past it: the rest of
 * the fan is "N more".
 */
export const AROUND: GraphBounds = { levels: 3, nodes: 50, fanOut: 20 };
/** A whole DAG: the first 100 tasks met from the task, breadth first, each fan read whole up to 100. */
export const WHOLE: GraphBounds = { levels: 0, nodes: 100, fanOut: 100 };

/** The graph's counts of neighbours stop at 100 (dashboardGraphNodes): 100 means "100 or more". */
const COUNT_CAP = 100;

const RULE_SHORT: Record<DependsRule, string> = { all_success: 'runs if all succeed', all_done: 'runs when all end', any_failed: 'runs if any fails' };

export interface GraphView {
  taskId: number;
  nodes: GraphNode[];
  whole: boolean;
  bounds: GraphBounds;
}

/** The task page's section: the tasks around it, and a link to its whole DAG. */
export function graphSection(view: GraphView): Html {
  if (view.nodes.length === 0) return html``;
  return html`<p class="hint">${view.nodes.length} tasks: ${view.bounds.levels} levels of prerequisites and of dependents at most, ${view.bounds.nodes} tasks at most.
<a href="/tasks/${view.taskId}/graph">The whole DAG</a></p>
${graphFigure(view)}`;
}

/** The page of a task's whole DAG (its connected component). */
export function graphPage(ctx: PageContext, view: GraphView): Html {
  return page(ctx, `DAG of task ${view.taskId}`, '/tasks', html`
<h1>DAG of task <a href="/tasks/${view.taskId}">${view.taskId}</a></h1>
<section id="task-graph" data-live="tasks" data-min-interval="2000" data-src="/tasks/${view.taskId}/graph?fragment=dag">
${graphBody(view)}
</section>`);
}

/** The DAG page's live part. */
export function graphBody(view: GraphView): Html {
  if (view.nodes.length === 0) return html`<p class="empty">task ${view.taskId} has no prerequisites and no dependents</p>`;
  const cut = view.nodes.length >= view.bounds.nodes;
  return html`<p class="hint">${view.nodes.length} tasks${cut ? html`, the first ${view.bounds.nodes} met from task ${view.taskId}, nearest first: the DAG has more` : ''}.</p>
${graphFigure(view)}`;
}

function graphFigure(view: GraphView): Html {
  const layout = layoutGraph(view.nodes);
  const shownPrerequisites = new Map<number, number>();
  const shownDependents = new Map<number, number>();
  for (const edge of layout.edges) {
    shownPrerequisites.set(edge.to.node.id, (shownPrerequisites.get(edge.to.node.id) ?? 0) + 1);
    shownDependents.set(edge.from.node.id, (shownDependents.get(edge.from.node.id) ?? 0) + 1);
  }
  const rules = new Set(view.nodes.filter((n) => n.prerequisites > 0).map((n) => n.depends_rule));
  return html`<div class="graph-scroll">
<svg class="graph" xmlns="http://www.w3.org/2000/svg" width="${layout.width}" height="${layout.height}" viewBox="0 0 ${layout.width} ${layout.height}" role="group" aria-label="dependency graph around task ${view.taskId}">
<defs><marker id="graph-arrow" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0 L8,4 L0,8 z"/></marker></defs>
<g class="edges">${layout.edges.map((edge) => edgePath(edge.from, edge.to))}</g>
<g class="nodes">${layout.nodes.map((placed) => nodeBox(placed, placed.node.id === view.taskId,
    placed.node.prerequisites - (shownPrerequisites.get(placed.node.id) ?? 0), placed.node.prerequisites >= COUNT_CAP,
    placed.node.dependents - (shownDependents.get(placed.node.id) ?? 0), placed.node.dependents >= COUNT_CAP))}</g>
</svg>
</div>
<p class="graph-legend">Arrows point from a task to those waiting for it.
${[...rules].sort().map((rule) => html` <span class="edge-key rule-${rule}">${RULE_SHORT[rule]}</span>`)}</p>`;
}

function edgePath(from: PlacedNode, to: PlacedNode): Html {
  const x1 = from.x + NODE_WIDTH;
  const y1 = from.y + NODE_HEIGHT / 2;
  const x2 = to.x - 2;
  const y2 = to.y + NODE_HEIGHT / 2;
  const bend = Math.max(20, (x2 - x1) / 2);
  const rule = to.node.depends_rule;
  return html`<path class="edge rule-${rule}" d="M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}" marker-end="url(#graph-arrow)"><title>${to.node.id} waits for ${from.node.id}: it ${RULE_SHORT[rule]}</title></path>`;
}

function nodeBox(placed: PlacedNode, focus: boolean, hiddenBefore: number, capBefore: boolean, hiddenAfter: number, capAfter: boolean): Html {
  const n = placed.node;
  const { x, y } = placed;
  const state = `${n.state_id} ${n.end_reason ?? TASK_STATES[n.state_id].toLowerCase()}`;
  const more = [
    hiddenBefore > 0 ? `${hiddenBefore}${capBefore ? '+' : ''} more before` : '',
    hiddenAfter > 0 ? `${hiddenAfter}${capAfter ? '+' : ''} more after` : '',
  ].filter(Boolean).join(' · ');
  const title = `task ${n.id}: ${n.state_id} (${TASK_STATES[n.state_id]})${n.end_reason ? `, ended ${n.end_reason}` : ''}\n${n.command}`
    + `${n.prerequisites > 0 ? `\nruns when ${DEPENDS_RULE_WORDS[n.depends_rule]}` : ''}${more ? `\nnot drawn: ${more}` : ''}`;
  return html`<a href="/tasks/${n.id}" class="node st-${n.state_id}${focus ? ' focus' : ''}" data-id="${n.id}" data-state="${n.state_id}"><title>${title}</title>
<rect x="${x}" y="${y}" width="${NODE_WIDTH}" height="${NODE_HEIGHT}" rx="4"/>
<text x="${x + 8}" y="${y + 16}" class="head">${clip(`${n.id} · ${state}`, 26)}</text>
<text x="${x + 8}" y="${y + 31}" class="cmd">${clip(n.command, 27)}</text>
${n.prerequisites > 0 ? html`<text x="${x + 8}" y="${y + 45}" class="rule rule-${n.depends_rule}">${RULE_SHORT[n.depends_rule]}</text>` : ''}
${more ? html`<text x="${x + 8}" y="${y + 57}" class="more">${more}</text>` : ''}
</a>`;
}

function clip(text: string, length: number): string {
  return text.length > length ? `${text.slice(0, length - 1)}…` : text;
}
