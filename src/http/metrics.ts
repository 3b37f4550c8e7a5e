import client from 'prom-client';
import type { NodeEvents, NodeState } from '../node/events.js';

/** How long a queue-depth reading is served before a scrape reads it again. */
const QUEUE_DEPTH_TTL_MS = 15_000;

/** What the metrics read from their node when scraped. */
export interface QueueDepth {
  group_id: number;
  ready: number;
  delayed: number;
}

export interface MetricsSource {
  events: NodeEvents;
  state: NodeState;
  running: number;
  ready: { active: boolean; listening: boolean };
  options: { maxTasks: number; workerId: number; groupId: number };
  /** Waiting tasks per group, read from the database. */
  queueDepth(): Promise<QueueDepth[]>;
}

/**
 * A node's Prometheus metrics (prom-client), one subscriber of its events: the parts know
 * nothing of them. Every metric is listed in docs/metrics.md. A registry per node, so that
 * several nodes in one process (tests, an embedding app) keep theirs apart.
 */
export class NodeMetrics {
  readonly registry = new client.Registry();
  private depth: { at: number; rows: QueueDepth[] } | null = null;
  private depthReading: Promise<void> | null = null;

  constructor(private readonly node: MetricsSource) {
    const r = this.registry;
    r.setDefaultLabels({ worker: String(node.options.workerId), group: String(node.options.groupId) });
    client.collectDefaultMetrics({ register: r, prefix: 'pgtasks_' });
    const ev = node.events;

    const started = new client.Counter({ name: 'pgtasks_runs_started_total', help: 'Runs whose process started', registers: [r] });
    const ended = new client.Counter({ name: 'pgtasks_runs_ended_total', help: 'Runs ended, by outcome (CS, CF, CC) and end reason', labelNames: ['state', 'end_reason'], registers: [r] });
    const duration = new client.Histogram({
      name: 'pgtasks_run_duration_seconds', help: 'From a run\'s process starting to its process group being gone', labelNames: ['state'], registers: [r],
      buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 14400],
    });
    const latency = new client.Histogram({
      name: 'pgtasks_start_latency_seconds', help: 'From the claim statement being sent to the run\'s process running', registers: [r],
      buckets: [0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1],
    });
    ev.on('run:started', (e) => {
      started.inc();
      latency.observe(e.startMs / 1000);
    });
    ev.on('run:ended', (e) => {
      ended.inc({ state: e.state, end_reason: e.endReason });
      if (e.durationMs > 0) duration.observe({ state: e.state }, e.durationMs / 1000);
    });

    new client.Gauge({ name: 'pgtasks_slots_running', help: 'Processes running now', registers: [r], collect() { this.set(node.running); } });
    new client.Gauge({ name: 'pgtasks_slots_free', help: 'Slots free now (max tasks − running)', registers: [r], collect() { this.set(Math.max(0, node.options.maxTasks - node.running)); } });

    const claims = new client.Counter({ name: 'pgtasks_claims_total', help: 'Claim statements sent', registers: [r] });
    const claimed = new client.Counter({ name: 'pgtasks_claimed_tasks_total', help: 'Tasks taken by claims', registers: [r] });
    const rowsPerClaim = new client.Histogram({ name: 'pgtasks_claim_rows', help: 'Tasks taken per claim', registers: [r], buckets: [0, 1, 2, 4, 8, 16, 32, 64, 128] });
    const claimSeconds = new client.Histogram({ name: 'pgtasks_claim_duration_seconds', help: 'Round trip of a claim statement', registers: [r], buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1] });
    ev.on('claim', (e) => {
      claims.inc();
      claimed.inc(e.claimed);
      rowsPerClaim.observe(e.claimed);
      claimSeconds.observe(e.ms / 1000);
    });

    const gained = new client.Counter({ name: 'pgtasks_lease_gained_total', help: 'Lease terms begun (the node became active)', registers: [r] });
    const renewed = new client.Counter({ name: 'pgtasks_lease_renewals_total', help: 'Lease renewals that succeeded', registers: [r] });
    const lost = new client.Counter({ name: 'pgtasks_lease_lost_total', help: 'Lease terms lost (not renewed in time, or taken over)', registers: [r] });
    ev.on('lease:gained', () => gained.inc());
    ev.on('lease:renewed', () => renewed.inc());
    ev.on('lease:lost', () => lost.inc());
    new client.Gauge({ name: 'pgtasks_lease_held', help: '1 while the node holds and trusts its lease', registers: [r], collect() { this.set(node.ready.active ? 1 : 0); } });
    new client.Gauge({
      name: 'pgtasks_node_state', help: 'The node\'s state: 1 for the one it is in', labelNames: ['state'], registers: [r],
      collect() {
        for (const s of ['starting', 'standby', 'active', 'stopping', 'stopped'] as const) this.set({ state: s }, node.state === s ? 1 : 0);
      },
    });

    const reconnects = new client.Counter({ name: 'pgtasks_listener_reconnects_total', help: 'LISTEN connections made again after a loss', registers: [r] });
    ev.on('listener:connected', (e) => {
      if (e.reconnect) reconnects.inc();
    });
    new client.Gauge({ name: 'pgtasks_listener_connected', help: '1 while the LISTEN connection is up', registers: [r], collect() { this.set(node.ready.listening ? 1 : 0); } });

    const fires = new client.Counter({ name: 'pgtasks_schedule_fires_total', help: 'Schedule slots fired: a copy inserted, or the task queued again', registers: [r] });
    const skips = new client.Counter({ name: 'pgtasks_schedule_skips_total', help: 'Schedule slots skipped (the task still ran, by its overlap rule)', registers: [r] });
    ev.on('schedule:fired', (e) => {
      fires.inc(e.cloned + e.requeued);
      skips.inc(e.skipped);
    });

    const retries = new client.Counter({ name: 'pgtasks_result_write_retries_total', help: 'Batches of results written again after a failed write', registers: [r] });
    ev.on('results:retry', () => retries.inc());
    const rejected = new client.Counter({ name: 'pgtasks_results_rejected_total', help: 'Run ends the database refused on their own (split out of their batch)', registers: [r] });
    ev.on('results:rejected', () => rejected.inc());

    const outBytes = new client.Counter({ name: 'pgtasks_output_bytes_total', help: 'Bytes of live output written to task_output', registers: [r] });
    const outFlushes = new client.Counter({ name: 'pgtasks_output_flushes_total', help: 'Statements that wrote live output', registers: [r] });
    const outDropped = new client.Counter({ name: 'pgtasks_output_dropped_bytes_total', help: 'Bytes of output beyond --output-keep, never written', registers: [r] });
    ev.on('output:flushed', (e) => {
      outBytes.inc(e.bytes);
      outFlushes.inc();
    });
    ev.on('output:dropped', (e) => outDropped.inc(e.bytes));

    {
      const readDepth = (): Promise<QueueDepth[]> => this.queueDepth();
      new client.Gauge({
        name: 'pgtasks_queue_depth', help: 'Waiting tasks per group (the task\'s group): ready to claim, or delayed; read at most every 15 s', labelNames: ['task_group', 'kind'], registers: [r],
        async collect() {
          this.reset();
          for (const row of await readDepth()) {
            this.set({ task_group: String(row.group_id), kind: 'ready' }, row.ready);
            this.set({ task_group: String(row.group_id), kind: 'delayed' }, row.delayed);
          }
        },
      });
    }
  }

  /** The Prometheus text exposition of every metric. */
  async text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  private async queueDepth(): Promise<QueueDepth[]> {
    const fresh = this.depth && performance.now() - this.depth.at < QUEUE_DEPTH_TTL_MS;
    if (!fresh) {
      this.depthReading ??= this.node
        .queueDepth()
        .then((rows) => {
          this.depth = { at: performance.now(), rows };
        })
        .finally(() => {
          this.depthReading = null;
        });
      // A failed read serves the last one (or none): a scrape must not fail with the database.
      await this.depthReading.catch(() => undefined);
    }
    return this.depth?.rows ?? [];
  }
}
