// Live updates: one LISTEN connection for the whole dashboard, fanned out to the browsers as
// server-sent events. The table is the truth and a notification a hint, so the feed reads the
// rows a notification may concern, once for all the pages, and sends what changed:
//
//   tasks    {ids?, g?}  a task was queued, delayed, cancelled, ended or (re)scheduled: a list
//                        reads its table again (and patches the rows that differ)
//   task     {id, …}     a task page's task: the summary fields that changed (watch.ts)
//   output   {id, …}     a task page's run printed more: the bytes, with the run (watch.ts)
//   workers  {}          a worker row changed, or a lease lapsed
//   resync   {}          the listener reconnected: notifications may have been missed
//
// A task page subscribes with /events?task=ID; while it only follows a run, it makes no
// request of its own (a page open 30 s on a task printing a line a second: 0 beyond the
// stream, where re-reading its parts on every event made 88).
//
// A lease that lapses sends no notification (nobody writes the row). The feed reads the
// workers, arms one timer at the earliest lease end of those that hold one, and reads again
// when it passes: a worker whose node did not renew is then 'failed', and the browsers hear
// of it. The reads happen at lease ends, not on a period.
//
// Streams are capped per client address and in all (limits.ts: 16 and 256 by default); past
// a cap /events answers 503 with one line, and the browser's page says it is not live.
import type { ServerResponse } from 'node:http';
import type pg from 'pg';
import type { Logger } from 'pino';
import { Listener } from '../../db/listener.js';
import type { Notification } from '../../db/notifications.js';
import { MAX_TIMER_MS } from '../../lib/timed-loop.js';
import { StreamSlots, type StreamLimits } from './limits.js';
import type { DashboardStore, WorkerRow } from './store.js';
import { TaskWatches } from './watch.js';

/** Read a little after the lease end, so that the database's now() is past it. */
const LAPSE_MARGIN_MS = 50;
/** A comment line now and then keeps proxies from closing an idle stream. */
const KEEPALIVE_MS = 25_000;

export class LiveFeed {
  private readonly clients = new Set<ServerResponse>();
  private readonly listener: Listener;
  private readonly slots: StreamSlots;
  private lapseTimer: NodeJS.Timeout | null = null;
  private keepalive: NodeJS.Timeout | null = null;
  private statuses = new Map<number, string>();
  private reading: Promise<void> | null = null;
  private readAgain = false;
  private stopped = false;
  private everConnected = false;
  private readonly watches: TaskWatches;

  constructor(
    config: pg.ClientConfig,
    channel: string,
    private readonly store: DashboardStore,
    private readonly log: Logger,
    limits: StreamLimits,
  ) {
    this.slots = new StreamSlots(limits);
    this.watches = new TaskWatches(store, (client, event, data) => client.write(message(event, data)), log);
    this.listener = new Listener(config, channel, log);
    this.listener.on('notification', (n: Notification) => this.onNotification(n));
    this.listener.on('connected', () => {
      // After a reconnect, notifications sent meanwhile are lost: every page reads again.
      if (this.everConnected) {
        this.broadcast('resync', {});
        this.watches.resync();
      }
      this.everConnected = true;
      this.readWorkers(true);
    });
  }

  async start(): Promise<void> {
    this.watches.start();
    await this.listener.start();
    this.keepalive = setInterval(() => {
      for (const client of this.clients) client.write(': keep-alive\n\n');
    }, KEEPALIVE_MS);
    this.keepalive.unref();
  }

  /** A stream's place for `address`, or why there is none (one line). */
  reserve(address: string): ReturnType<StreamSlots['take']> {
    return this.slots.take(address);
  }

  /** Streams open now. */
  get streams(): number {
    return this.slots.size;
  }

  /**
   * Takes over a response as an event stream until the browser goes away; then frees its slot.
   * A task page names its task: it is sent that task's changes and output.
   */
  subscribe(response: ServerResponse, headers: Record<string, string>, slot: { release(): void }, taskId: number | null = null): void {
    response.writeHead(200, {
      ...headers,
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    // retry: how soon a browser reconnects when the stream breaks.
    response.write(`retry: 1000\nevent: hello\ndata: {}\n\n`);
    this.clients.add(response);
    if (taskId !== null) this.watches.add(response, taskId);
    response.on('close', () => {
      this.clients.delete(response);
      if (taskId !== null) this.watches.remove(response, taskId);
      slot.release();
    });
  }

  get connected(): boolean {
    return this.listener.connected;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.lapseTimer) clearTimeout(this.lapseTimer);
    if (this.keepalive) clearInterval(this.keepalive);
    for (const client of this.clients) client.end();
    this.clients.clear();
    await this.listener.stop();
    await this.watches.stop();
    await this.reading;
  }

  private onNotification(n: Notification): void {
    switch (n.e) {
      case 'queued':
      case 'delayed':
      case 'schedule':
        this.broadcast('tasks', { g: n.g });
        this.watches.tasksChanged(null);
        break;
      case 'cancel':
        this.broadcast('tasks', {});
        this.watches.tasksChanged(null);
        break;
      case 'ended':
        this.broadcast('tasks', n.ids ? { ids: n.ids } : {});
        this.watches.tasksChanged(n.ids ?? null);
        break;
      case 'output':
        this.watches.outputAdded(n.ids ?? null);
        break;
      case 'worker':
        this.readWorkers(true);
        break;
      case 'ping':
        break;
    }
  }

  private broadcast(event: string, data: object): void {
    const text = message(event, data);
    for (const client of this.clients) client.write(text);
  }

  /**
   * Reads the workers (one read at a time; requests meanwhile fold into one more), tells the
   * browsers when asked to or when a status changed, and re-arms the lapse timer.
   */
  private readWorkers(announce: boolean): void {
    if (this.stopped) return;
    if (announce) this.announceNext = true;
    if (this.reading) {
      this.readAgain = true;
      return;
    }
    this.reading = (async () => {
      do {
        this.readAgain = false;
        const tell = this.announceNext;
        this.announceNext = false;
        try {
          const workers = await this.store.workers();
          if (this.changed(workers) || tell) this.broadcast('workers', {});
          this.armLapseTimer(workers);
        } catch (error) {
          // (The schema may not exist yet, before a node's first migration.) The next
          // notification or reconnect reads again.
          this.log.debug({ err: (error as Error).message }, 'dashboard: could not read the workers');
          if (tell) this.broadcast('workers', {});
        }
      } while (this.readAgain && !this.stopped);
    })().finally(() => {
      this.reading = null;
    });
  }

  private announceNext = false;

  private changed(workers: WorkerRow[]): boolean {
    const next = new Map(workers.map((w) => [w.id, w.status]));
    const changed = next.size !== this.statuses.size || [...next].some(([id, status]) => this.statuses.get(id) !== status);
    this.statuses = next;
    return changed;
  }

  private armLapseTimer(workers: WorkerRow[]): void {
    if (this.lapseTimer) clearTimeout(this.lapseTimer);
    this.lapseTimer = null;
    const ends = workers.map((w) => w.lapses_in_ms).filter((ms): ms is number => ms !== null);
    if (ends.length === 0 || this.stopped) return;
    // A lease months long (any value a user writes) is re-read after 24.8 days, the longest a
    // timer waits: a longer delay would fire at once, and again, in a busy loop.
    this.lapseTimer = setTimeout(() => this.readWorkers(false), Math.min(Math.max(0, Math.min(...ends)) + LAPSE_MARGIN_MS, MAX_TIMER_MS));
    this.lapseTimer.unref();
  }
}

function message(event: string, data: object): string {
  return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}
