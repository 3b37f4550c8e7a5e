import pg from 'pg';
import pino from 'pino';
import type { Statements } from '../sql/queries/index.js';
import { Listener } from '../db/listener.js';
import type { Notification } from '../db/notifications.js';
import type { Task } from './types.js';

export class WaitTimeoutError extends Error {
  constructor(
    readonly taskId: number,
    timeoutMs: number,
  ) {
    super(`task ${taskId} did not end within ${timeoutMs} ms`);
    this.name = 'WaitTimeoutError';
  }
}

interface Waiter {
  resolve(task: Task): void;
  reject(error: Error): void;
}

const ENDED = new Set(['CS', 'CF', 'CC']);

/**
 * Waits for tasks to end (CS, CF or CC) on one LISTEN connection, opened at the first wait
 * and kept until close(). A statement that ends tasks sends one 'ended' notification naming
 * them (or none: "look again"); it is a hint, and the task rows are read to know. Every
 * (re)connection reads them again, since a notification sent meanwhile is lost.
 */
export class TaskWaiter {
  private readonly waiters = new Map<number, Set<Waiter>>();
  private listener: Listener | null = null;
  private listening: Promise<void> | null = null;
  private checking = false;
  private recheck: Set<number> | 'all' | null = null;

  constructor(
    private readonly pool: pg.Pool,
    private readonly queries: Statements,
    private readonly listenConfig: pg.ClientConfig,
    private readonly channel: string,
  ) {}

  async wait(id: number, timeoutMs: number | undefined, notFound: (id: number) => Error): Promise<Task> {
    return new Promise<Task>((resolve, reject) => {
      let timer: NodeJS.Timeout | null = null;
      const waiter: Waiter = {
        resolve: (task) => {
          if (timer) clearTimeout(timer);
          resolve(task);
        },
        reject: (error) => {
          if (timer) clearTimeout(timer);
          reject(error);
        },
      };
      const set = this.waiters.get(id) ?? new Set();
      set.add(waiter);
      this.waiters.set(id, set);
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          this.remove(id, waiter);
          reject(new WaitTimeoutError(id, timeoutMs));
        }, timeoutMs);
      }
      // Listening first, then one read: an end before the LISTEN is in the row, one after it
      // is notified.
      this.listen()
        .then(() => this.check([id], notFound))
        .catch((error: Error) => {
          this.remove(id, waiter);
          waiter.reject(error);
        });
    });
  }

  private remove(id: number, waiter: Waiter): void {
    const set = this.waiters.get(id);
    set?.delete(waiter);
    if (set?.size === 0) this.waiters.delete(id);
  }

  private listen(): Promise<void> {
    if (this.listening) return this.listening;
    const listener = new Listener(this.listenConfig, this.channel, pino({ level: 'silent' }));
    listener.on('notification', (n: Notification) => {
      if (n.e !== 'ended') return;
      if (!n.ids) this.schedule('all');
      else this.schedule(new Set(n.ids.map(Number).filter((id) => this.waiters.has(id))));
    });
    let first = true;
    listener.on('connected', () => {
      if (!first) this.schedule('all');
      first = false;
    });
    this.listener = listener;
    this.listening = listener.start().catch((error: unknown) => {
      this.listening = null;
      this.listener = null;
      throw error;
    });
    return this.listening;
  }

  /** Reads the rows of waited-for tasks, one statement at a time for all that need it. */
  private schedule(ids: Set<number> | 'all'): void {
    if (ids !== 'all' && ids.size === 0) return;
    if (this.recheck === 'all' || ids === 'all') this.recheck = 'all';
    else this.recheck = new Set([...(this.recheck ?? []), ...ids]);
    if (this.checking) return;
    this.checking = true;
    void (async () => {
      while (this.recheck) {
        const next = this.recheck === 'all' ? [...this.waiters.keys()] : [...this.recheck];
        this.recheck = null;
        await this.check(next, null).catch(() => this.listener?.reconnect());
      }
      this.checking = false;
    })();
  }

  private async check(ids: number[], notFound: ((id: number) => Error) | null): Promise<void> {
    if (ids.length === 0) return;
    const { rows } = await this.queries.getTasks(this.pool, { taskIds: ids });
    const found = new Map(rows.map((t) => [Number(t.id), t]));
    for (const id of ids) {
      const task = found.get(id);
      const set = this.waiters.get(id);
      if (!set) continue;
      if (task && !ENDED.has(task.state_id)) continue;
      this.waiters.delete(id);
      for (const waiter of set) {
        if (task) waiter.resolve(task);
        else if (notFound) waiter.reject(notFound(id));
        else waiter.reject(new Error(`task ${id} was deleted while waited for`));
      }
    }
  }

  async close(): Promise<void> {
    await this.listener?.stop();
    this.listener = null;
    this.listening = null;
  }
}
