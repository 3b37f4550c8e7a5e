// The tasks that open task pages show, and what each page was last sent: the live feed reads
// them when a notification may concern them, and sends each page only what changed.
//
//   task    {id, state, attempt, live, fields: {name: html}, error?: html}
//           the summary fields that changed (all of them to a page that just subscribed)
//   output  {id, attempt, chunks: [{seq, pos, data (base64)}], more}
//           what the run printed since the last event; more: there is more than one event
//           holds, the page reads the rest itself
//
// One read per notification for all the pages (their tasks by id, then the new chunks of those
// that printed), however many pages are open: a page makes no request while it only follows.
// The state held is per open stream (capped, limits.ts) and per task those streams show; a
// closed stream takes its own away.
import type { ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Task } from '../../client/types.js';
import { TimedLoop } from '../../lib/timed-loop.js';
import type { DashboardStore } from './store.js';
import { errorBlock, summaryFields } from './views/task-fields.js';

/** Chunks per output event: a run that printed more is read by the page itself (GET …/output). */
const CHUNKS_PER_EVENT = 64;
/**
 * A stream whose browser reads slower than the run prints is sent no more output past this
 * much unsent (1 MiB): the page sees the gap at the next chunk it gets and reads it itself, so
 * a stalled tab costs at most this much memory here.
 */
const MAX_UNSENT_BYTES = 1 << 20;

interface Watch {
  clients: Set<ServerResponse>;
  /** Clients that subscribed since the last read: they get every field. */
  fresh: Set<ServerResponse>;
  /** The fields last sent, rendered. */
  sent: Map<string, string>;
  /** The run whose output is followed, and its last chunk sent (null: not known yet). */
  attempt: number;
  after: number | null;
}

export type Send = (client: ServerResponse, event: string, data: object) => void;

export class TaskWatches {
  private readonly watches = new Map<number, Watch>();
  private readonly dueTasks = new Set<number>();
  private readonly dueOutput = new Set<number>();
  private readonly loop = new TimedLoop(() => this.read());

  constructor(
    private readonly store: DashboardStore,
    private readonly send: Send,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.loop.start();
  }

  stop(): Promise<void> {
    return this.loop.stop();
  }

  /** `client` shows task `id`: it is sent the task's fields now, then what changes. */
  add(client: ServerResponse, id: number): void {
    let watch = this.watches.get(id);
    if (!watch) {
      watch = { clients: new Set(), fresh: new Set(), sent: new Map(), attempt: 0, after: null };
      this.watches.set(id, watch);
    }
    watch.clients.add(client);
    watch.fresh.add(client);
    this.dueTasks.add(id);
    this.loop.request();
  }

  remove(client: ServerResponse, id: number): void {
    const watch = this.watches.get(id);
    if (!watch) return;
    watch.clients.delete(client);
    watch.fresh.delete(client);
    if (watch.clients.size === 0) this.watches.delete(id);
  }

  /** These tasks changed (null: any may have). */
  tasksChanged(ids: number[] | null): void {
    this.mark(this.dueTasks, ids);
  }

  /** Runs of these tasks printed more (null: any may have); their rows are read too (a claim notifies nobody). */
  outputAdded(ids: number[] | null): void {
    this.mark(this.dueOutput, ids);
    this.mark(this.dueTasks, ids);
  }

  /** The listener reconnected: everything may have changed. */
  resync(): void {
    this.outputAdded(null);
  }

  private mark(due: Set<number>, ids: number[] | null): void {
    let any = false;
    for (const id of ids ?? this.watches.keys()) {
      if (!this.watches.has(id)) continue;
      due.add(id);
      any = true;
    }
    if (any) this.loop.request();
  }

  private async read(): Promise<null> {
    const taskIds = [...this.dueTasks];
    const outputIds = [...this.dueOutput];
    this.dueTasks.clear();
    this.dueOutput.clear();
    try {
      const tasks = taskIds.length > 0 ? await this.store.tasksById(taskIds) : [];
      for (const task of tasks) await this.sendTask(task);
      for (const id of outputIds) await this.sendOutput(id);
    } catch (error) {
      // The next notification or reconnect reads again; a page that missed a change sees it then.
      this.log.debug({ err: (error as Error).message }, 'dashboard: could not read the watched tasks');
    }
    return null;
  }

  private async sendTask(task: Task): Promise<void> {
    const id = Number(task.id);
    const watch = this.watches.get(id);
    if (!watch) return;
    const rendered = new Map(summaryFields(task).map(([name, value]) => [name, value.text]));
    rendered.set('error', errorBlock(task).text);
    const changed: Record<string, string> = {};
    for (const [name, text] of rendered) if (watch.sent.get(name) !== text) changed[name] = text;
    const all = Object.fromEntries(rendered);
    const head = { id, state: task.state_id, attempt: task.attempt, live: task.live_worker_id !== null };
    const isNew = watch.sent.size === 0;
    for (const client of watch.clients) {
      const fields = watch.fresh.has(client) ? all : changed;
      if (Object.keys(fields).length > 0) this.send(client, 'task', { ...head, fields });
    }
    watch.fresh.clear();
    watch.sent = rendered;
    if (isNew) {
      // A page reads the output printed before it opened itself; the feed sends what follows.
      watch.attempt = task.attempt;
      watch.after = task.attempt === 0 ? -1 : await this.store.lastOutputSeq(id, task.attempt);
    } else if (task.attempt !== watch.attempt) {
      // A new run: its output is sent from its first chunk.
      watch.attempt = task.attempt;
      watch.after = -1;
      this.dueOutput.add(id);
      this.loop.request();
    }
  }

  private async sendOutput(id: number): Promise<void> {
    const watch = this.watches.get(id);
    if (!watch || watch.attempt === 0 || watch.after === null) return;
    const chunks = await this.store.output(id, watch.attempt, watch.after, CHUNKS_PER_EVENT);
    if (chunks.length === 0) return;
    watch.after = chunks[chunks.length - 1]!.seq;
    const data = {
      id, attempt: watch.attempt, more: chunks.length === CHUNKS_PER_EVENT,
      chunks: chunks.map((c) => ({ seq: c.seq, pos: c.pos, data: c.data.toString('base64') })),
    };
    for (const client of watch.clients) if (client.writableLength < MAX_UNSENT_BYTES) this.send(client, 'output', data);
  }
}
