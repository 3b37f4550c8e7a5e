// Where each task of a dependency graph goes: in columns by rank (a task one column right of
// its last prerequisite drawn, so every arrow points right), and within a column in the order
// that crosses fewer arrows (each task near the mean row of its neighbours, a few sweeps).
// Bounded by the graph's own bound (≤ 100 tasks): the sweeps cost nothing worth counting.
import type { GraphNode } from '../store.js';

export const NODE_WIDTH = 180;
export const NODE_HEIGHT = 62;
const GAP_X = 44;
const GAP_Y = 14;
const MARGIN = 8;
/** A rank taller than this wraps into columns WRAP_GAP apart. */
const MAX_ROWS = 10;
const WRAP_GAP = 18;
/** Each sweep moves tasks by their neighbours' rows; 4 settle a graph of 100 tasks well enough. */
const SWEEPS = 4;

export interface PlacedNode {
  node: GraphNode;
  x: number;
  y: number;
}

export interface GraphLayout {
  nodes: PlacedNode[];
  /** prerequisite → dependent, both drawn. */
  edges: Array<{ from: PlacedNode; to: PlacedNode }>;
  width: number;
  height: number;
}

export function layoutGraph(nodes: GraphNode[]): GraphLayout {
  const byId = new Map(nodes.map((node) => [node.id, node]));
  const prerequisites = new Map<number, number[]>();
  const dependents = new Map<number, number[]>();
  for (const node of nodes) {
    const drawn = node.shown_prerequisites.filter((id) => id !== node.id && byId.has(id));
    prerequisites.set(node.id, drawn);
    for (const id of drawn) dependents.set(id, [...(dependents.get(id) ?? []), node.id]);
  }

  const rank = ranks(nodes, prerequisites, dependents);
  const columns: number[][] = [];
  // First order: as the walk met them (prerequisites up, then the task, then dependents), by id.
  for (const node of [...nodes].sort((a, b) => a.depth - b.depth || a.id - b.id)) {
    (columns[rank.get(node.id)!] ??= []).push(node.id);
  }
  for (let sweep = 0; sweep < SWEEPS; sweep++) {
    const down = sweep % 2 === 0;
    const order = down ? columns.map((_, i) => i) : columns.map((_, i) => columns.length - 1 - i);
    for (const c of order) {
      const neighbours = down ? prerequisites : dependents;
      reorder(columns[c]!, neighbours, rowOf(columns));
    }
  }

  // A rank of more than MAX_ROWS tasks (a fan-out) wraps into several columns side by side, so
  // 50 dependents of one task make a block 5 wide rather than a column 3 800 px tall.
  const shapes = columns.map((column) => {
    const wide = Math.ceil(column.length / MAX_ROWS);
    return { wide, rows: Math.ceil(column.length / wide) };
  });
  const tallest = Math.max(...shapes.map((shape) => shape.rows));
  const height = MARGIN * 2 + tallest * NODE_HEIGHT + (tallest - 1) * GAP_Y;
  const placed = new Map<number, PlacedNode>();
  let left = MARGIN;
  columns.forEach((column, c) => {
    const { wide, rows } = shapes[c]!;
    const columnHeight = rows * NODE_HEIGHT + (rows - 1) * GAP_Y;
    const top = MARGIN + (height - MARGIN * 2 - columnHeight) / 2;
    column.forEach((id, i) => {
      const x = left + Math.floor(i / rows) * (NODE_WIDTH + WRAP_GAP);
      placed.set(id, { node: byId.get(id)!, x, y: Math.round(top + (i % rows) * (NODE_HEIGHT + GAP_Y)) });
    });
    left += wide * NODE_WIDTH + (wide - 1) * WRAP_GAP + GAP_X;
  });
  const edges: GraphLayout['edges'] = [];
  for (const [id, drawn] of prerequisites) for (const from of drawn) edges.push({ from: placed.get(from)!, to: placed.get(id)! });
  return {
    nodes: [...placed.values()],
    edges,
    width: left - GAP_X + MARGIN,
    height,
  };
}

/**
 * The longest path to each task from a task with no prerequisite drawn (Kahn's order). The
 * database refuses cycles; a task left over anyway (rows written past the triggers) goes in a
 * column after the rest rather than looping.
 */
function ranks(nodes: GraphNode[], prerequisites: Map<number, number[]>, dependents: Map<number, number[]>): Map<number, number> {
  const rank = new Map<number, number>();
  const waiting = new Map(nodes.map((node) => [node.id, prerequisites.get(node.id)!.length]));
  const ready = nodes.filter((node) => waiting.get(node.id) === 0).map((node) => node.id);
  for (const id of ready) rank.set(id, 0);
  while (ready.length > 0) {
    const id = ready.shift()!;
    for (const next of dependents.get(id) ?? []) {
      rank.set(next, Math.max(rank.get(next) ?? 0, rank.get(id)! + 1));
      const left = waiting.get(next)! - 1;
      waiting.set(next, left);
      if (left === 0) ready.push(next);
    }
  }
  const last = Math.max(0, ...rank.values()) + 1;
  for (const node of nodes) if (waiting.get(node.id)! > 0) rank.set(node.id, last);
  // Columns with no task (ranks skipped by the leftovers) are closed up.
  const used = [...new Set(rank.values())].sort((a, b) => a - b);
  return new Map([...rank].map(([id, r]) => [id, used.indexOf(r)]));
}

/** Each task's row counted from its column's middle: columns are drawn centred. */
function rowOf(columns: number[][]): Map<number, number> {
  const row = new Map<number, number>();
  for (const column of columns) column.forEach((id, r) => row.set(id, r - (column.length - 1) / 2));
  return row;
}

/** Sorts a column by the mean row of each task's neighbours; a task without any keeps its row. */
function reorder(column: number[], neighbours: Map<number, number[]>, row: Map<number, number>): void {
  const key = new Map<number, number>();
  column.forEach((id, r) => {
    const rows = (neighbours.get(id) ?? []).map((n) => row.get(n)!).filter((n) => n !== undefined);
    key.set(id, rows.length > 0 ? rows.reduce((a, b) => a + b, 0) / rows.length : r - (column.length - 1) / 2);
  });
  column.sort((a, b) => key.get(a)! - key.get(b)! || a - b);
}
