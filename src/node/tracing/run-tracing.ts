import type { Span } from '@opentelemetry/api';
import type { Logger } from 'pino';
import type { NodeEventMap, NodeEvents } from '../events.js';
import type { Service } from '../services.js';
import { openTracer, type OpenTracer } from './sdk.js';
import { formatTraceParent, parseTraceParent } from './traceparent.js';

/**
 * How long a stopping node waits for its last spans to be exported: a collector that does
 * not answer costs the stop this much, never more (the exporter's own timeout is 10 s).
 */
export const TRACING_FLUSH_MS = 5_000;

/** A run as it is claimed, before its process starts. */
export interface TracedRun {
  taskId: number;
  attempt: number;
  params: unknown;
  /** performance.now() when its claim statement was sent: where the span begins. */
  claimedAt: number;
}

/** Gives a run its span before its process starts; returns the TRACEPARENT the task gets (null: none). */
export type TraceRun = (run: TracedRun) => string | null;

/** What every span says of the node that ran it. */
export interface TracingNode {
  workerId: number;
  groupId: number;
  nodeName: string;
}

/**
 * One OpenTelemetry span per run, from its claim to its end (docs/tracing.md): begun by the
 * live runs just before the process starts (the task gets the span's context in TRACEPARENT,
 * so its own spans join the trace), then fed by the node's events like any subscriber, and
 * ended and dropped with the run's end: it holds the spans of the runs live now, nothing else.
 */
export class RunTracing implements Service {
  private sdk: OpenTracer | null = null;
  /** The live runs' spans, by "task id:attempt". */
  private readonly spans = new Map<string, Span>();
  private readonly unsubscribe: Array<() => void> = [];

  constructor(
    private readonly events: NodeEvents,
    private readonly node: TracingNode,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    if (this.sdk) return;
    this.sdk = await openTracer(this.log);
    this.log.info({ endpoint: this.sdk.endpoint }, 'tracing: one span per run, exported by OTLP/HTTP');
    this.on('run:started', (e) => this.spans.get(`${e.taskId}:${e.attempt}`)?.addEvent('process started', { 'process.pid': e.pid }));
    this.on('run:progress', (e) => {
      const attributes: Record<string, number | string> = {};
      if (e.progress !== null) attributes['pgtasks.progress'] = e.progress;
      if (e.message !== null) attributes['pgtasks.progress.message'] = e.message;
      this.spans.get(`${e.taskId}:${e.attempt}`)?.addEvent('progress', attributes);
    });
    this.on('run:ended', (e) => this.end(e));
  }

  /** See TraceRun. A valid params.traceparent is the span's parent: the submitter's trace goes on. */
  begin(run: TracedRun): string | null {
    try {
      return this.beginSpan(run);
    } catch (error) {
      // Called in the middle of a run's start: tracing never fails a run.
      this.log.warn({ task: run.taskId, attempt: run.attempt, err: (error as Error).message }, 'tracing: could not begin the run\'s span');
      return null;
    }
  }

  private beginSpan(run: TracedRun): string | null {
    const sdk = this.sdk;
    if (!sdk) return null;
    const { api } = sdk;
    let parent = api.ROOT_CONTEXT;
    const given = typeof run.params === 'object' && run.params !== null ? (run.params as { traceparent?: unknown }).traceparent : undefined;
    if (given !== undefined) {
      const context = parseTraceParent(given);
      if (context) parent = api.trace.setSpanContext(parent, { traceId: context.traceId, spanId: context.spanId, traceFlags: context.flags, isRemote: true });
      else this.log.debug({ task: run.taskId, attempt: run.attempt, traceparent: (typeof given === 'string' ? given : JSON.stringify(given)).slice(0, 100) }, 'tracing: params.traceparent is not a W3C traceparent; the run starts a trace of its own');
    }
    const key = `${run.taskId}:${run.attempt}`;
    // The same run begun twice (it is not): its first span is ended, never left behind.
    this.spans.get(key)?.end();
    const span = sdk.tracer.startSpan(
      'run',
      {
        kind: api.SpanKind.CONSUMER,
        startTime: performance.timeOrigin + run.claimedAt,
        attributes: {
          'pgtasks.task.id': run.taskId,
          'pgtasks.run.attempt': run.attempt,
          'pgtasks.group.id': this.node.groupId,
          'pgtasks.worker.id': this.node.workerId,
          'pgtasks.node.name': this.node.nodeName,
        },
      },
      parent,
    );
    this.spans.set(key, span);
    return formatTraceParent({ traceId: span.spanContext().traceId, spanId: span.spanContext().spanId, flags: span.spanContext().traceFlags });
  }

  private end(e: NodeEventMap['run:ended'][0]): void {
    const key = `${e.taskId}:${e.attempt}`;
    const span = this.spans.get(key);
    if (!span || !this.sdk) return;
    this.spans.delete(key);
    span.setAttribute('pgtasks.run.state', e.state);
    span.setAttribute('pgtasks.run.end_reason', e.endReason);
    if (e.exitCode !== null) span.setAttribute('process.exit.code', e.exitCode);
    if (e.signal !== null) span.setAttribute('pgtasks.run.signal', e.signal);
    if (e.state === 'CF') {
      const how = e.exitCode !== null ? `: exit code ${e.exitCode}` : e.signal !== null ? `: ${e.signal}` : '';
      span.setStatus({ code: this.sdk.api.SpanStatusCode.ERROR, message: `${e.endReason}${how}` });
    }
    span.end();
  }

  /** Ends what is left (nothing, after a stop that waited for the runs), then exports the rest, for TRACING_FLUSH_MS at most. */
  async stop(): Promise<void> {
    const sdk = this.sdk;
    if (!sdk) return;
    this.sdk = null;
    for (const off of this.unsubscribe.splice(0)) off();
    for (const span of this.spans.values()) span.end();
    this.spans.clear();
    let late = false;
    const flushed = sdk.shutdown().then(
      () => false,
      (error: unknown) => {
        if (!late) this.log.warn({ endpoint: sdk.endpoint, err: (error as Error).message }, 'tracing: the last spans could not be exported');
        return false;
      },
    );
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), TRACING_FLUSH_MS)));
    late = await Promise.race([flushed, timedOut]);
    clearTimeout(timer);
    if (!late) return;
    this.log.warn({ endpoint: sdk.endpoint, waitedMs: TRACING_FLUSH_MS }, 'tracing: the collector did not take the last spans in time; stopping without them');
    sdk.abandon();
  }

  private on<K extends keyof NodeEventMap>(name: K, listener: (...event: NodeEventMap[K]) => void): void {
    // @types/node's EventEmitter<T> cannot see that the listener is K's (as in NodeEvents.publish).
    const events = this.events as unknown as { on(name: K, l: typeof listener): void; off(name: K, l: typeof listener): void };
    events.on(name, listener);
    this.unsubscribe.push(() => events.off(name, listener));
  }
}
