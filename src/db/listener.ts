import { EventEmitter } from 'node:events';
import pg from 'pg';
import type { Logger } from 'pino';
import { Backoff } from '../lib/backoff.js';
import { createClient, quoteIdent } from './connection.js';
import { NotificationParser } from './notifications.js';

/**
 * One dedicated connection that LISTENs on the schema's channel. When the connection drops
 * it reconnects with backoff and jitter and emits 'connected' again, so that the owner
 * re-reads the rows: a notification sent while nobody listened is lost for good.
 *
 * Events: 'notification' (Notification, src/db/notifications.ts), 'connected' (true on a reconnect), 'disconnected' (Error).
 */
export class Listener extends EventEmitter {
  private client: pg.Client | null = null;
  private stopped = false;
  // 0.1 s, 0.2 s, 0.4 s … capped at 10 s, each ±30 % so a cluster does not reconnect in step.
  private readonly backoff = new Backoff(100, 10_000, 0.3);
  private retryTimer: NodeJS.Timeout | null = null;
  private readonly parser: NotificationParser;

  constructor(
    private readonly config: pg.ClientConfig,
    private readonly channel: string,
    private readonly log: Logger,
  ) {
    super();
    this.parser = new NotificationParser(log);
  }

  /**
   * Resolves once listening for the first time; rejects if that first attempt fails. Does
   * nothing while connected; after stop() it listens again.
   */
  async start(): Promise<void> {
    if (this.client) return;
    this.stopped = false;
    await this.connect();
  }

  private async connect(): Promise<void> {
    const client = createClient({ ...this.config, keepAlive: true });
    client.on('notification', (message) => {
      if (message.channel !== this.channel || !message.payload) return;
      const notification = this.parser.parse(message.payload);
      if (notification) this.emit('notification', notification);
    });
    client.on('error', (error) => this.onLost(client, error));
    client.on('end', () => this.onLost(client, new Error('connection ended')));
    await client.connect();
    await client.query(`LISTEN ${quoteIdent(this.channel)}`);
    if (this.stopped) {
      await client.end();
      return;
    }
    this.client = client;
    const reconnect = this.backoff.attempts > 0;
    if (reconnect) this.log.info({ attempts: this.backoff.attempts }, 'listener reconnected');
    this.backoff.reset();
    this.emit('connected', reconnect);
  }

  private onLost(client: pg.Client, error: Error): void {
    if (this.client !== client || this.stopped) return;
    this.client = null;
    client.removeAllListeners('end');
    client.end().catch(() => undefined);
    this.log.warn({ err: error.message }, 'listener connection lost; reconnecting');
    this.emit('disconnected', error);
    this.scheduleRetry();
  }

  private scheduleRetry(): void {
    if (this.stopped) return;
    const delay = this.backoff.next();
    this.retryTimer = setTimeout(() => {
      this.connect().catch((error: Error) => {
        this.log.debug({ err: error.message, attempt: this.backoff.attempts }, 'listener reconnect failed');
        this.scheduleRetry();
      });
    }, delay);
  }

  /** Drops the connection and reconnects, e.g. when it stopped delivering notifications. */
  reconnect(): void {
    if (this.client) this.onLost(this.client, new Error('reconnect requested'));
  }

  get connected(): boolean {
    return this.client !== null;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    const client = this.client;
    this.client = null;
    if (client) {
      client.removeAllListeners('end');
      await client.end().catch(() => undefined);
    }
  }
}
