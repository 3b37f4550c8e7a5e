import { readFile } from 'node:fs/promises';
import type http from 'node:http';
import type { Tracer } from '@opentelemetry/api';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace';
import type { Logger } from 'pino';

/** The OpenTelemetry API module, loaded with the SDK (its enums and context functions). */
export type OtelApi = typeof import('@opentelemetry/api');

/** A tracer that exports to the OTLP endpoint, and how to end it. */
export interface OpenTracer {
  api: OtelApi;
  tracer: Tracer;
  /** Where spans go, for the log (without any user and password). */
  endpoint: string;
  /** Exports what is left and ends the exporter (bounded by the caller). */
  shutdown(): Promise<void>;
  /** Gives up the exports still waiting for the collector, so that nothing of the SDK holds the process. */
  abandon(): void;
}

/** Is tracing on: --otel, or an OTLP endpoint in the environment; OTEL_SDK_DISABLED=true turns it off. */
export function tracingWanted(flag: boolean | undefined, env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true') return false;
  return flag === true || !!env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || !!env.OTEL_EXPORTER_OTLP_ENDPOINT;
}

/**
 * Loads the SDK (only here, when tracing is on: a node without it loads none of it) and
 * builds a tracer provider of its own, not registered as the process's global one (an
 * application that embeds a node keeps its own). The exporter is OTLP over HTTP with JSON
 * bodies, and takes its endpoint, headers, timeout and compression from the standard
 * OTEL_EXPORTER_OTLP_* variables; the resource from OTEL_SERVICE_NAME (default 'pg-tasks')
 * and OTEL_RESOURCE_ATTRIBUTES.
 */
export async function openTracer(log: Logger, env: NodeJS.ProcessEnv = process.env): Promise<OpenTracer> {
  // package.json is three levels up from both src/node/tracing (a clone) and dist/node/tracing (the package).
  const { version } = JSON.parse(await readFile(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  let modules;
  try {
    modules = await Promise.all([
      import('@opentelemetry/api'),
      import('@opentelemetry/sdk-trace'),
      import('@opentelemetry/exporter-trace-otlp-http'),
      import('@opentelemetry/resources'),
    ]);
  } catch (error) {
    throw new Error(`tracing: could not load the OpenTelemetry SDK: ${(error as Error).message}`, { cause: error });
  }
  const [api, sdk, otlp, resources] = modules;
  const endpoint = exportEndpoint(env);
  const exporter = new LoggedExporter(new otlp.OTLPTraceExporter({ httpAgentOptions: unrefAgent }), endpoint, log);
  const resource = resources
    .defaultResource()
    .merge(resources.resourceFromAttributes({ 'service.name': 'pg-tasks', 'service.version': version }))
    .merge(resources.detectResources({ detectors: [resources.envDetector] }));
  const provider = new sdk.TracerProvider({
    resource,
    spanProcessors: [new sdk.BatchSpanProcessor({ exporter, ...batchOptions(env) })],
  });
  return { api, tracer: provider.getTracer('pg-tasks', version), endpoint, shutdown: () => provider.shutdown(), abandon: () => exporter.abandon() };
}

/** The SDK's batch settings from the standard OTEL_BSP_* variables (its defaults: 5 s, 2048 spans, 512 a batch, 30 s). */
function batchOptions(env: NodeJS.ProcessEnv): { scheduledDelayMillis?: number; maxQueueSize?: number; maxExportBatchSize?: number; exportTimeoutMillis?: number } {
  const read = (name: string): number | undefined => {
    const n = Number(env[name]);
    return env[name] && Number.isInteger(n) && n > 0 ? n : undefined;
  };
  const options = {
    scheduledDelayMillis: read('OTEL_BSP_SCHEDULE_DELAY'),
    maxQueueSize: read('OTEL_BSP_MAX_QUEUE_SIZE'),
    maxExportBatchSize: read('OTEL_BSP_MAX_EXPORT_BATCH_SIZE'),
    exportTimeoutMillis: read('OTEL_BSP_EXPORT_TIMEOUT'),
  };
  return Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
}

/** Where the exporter sends, as it resolves it (signal endpoint as is; the general one + /v1/traces). */
function exportEndpoint(env: NodeJS.ProcessEnv): string {
  const specific = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim();
  const general = env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim();
  const url = specific || (general ? `${general.replace(/\/$/, '')}/v1/traces` : 'http://localhost:4318/v1/traces');
  try {
    const parsed = new URL(url);
    parsed.username = '';
    parsed.password = '';
    return parsed.toString();
  } catch {
    return url;
  }
}

/**
 * The exporter's connections do not keep the process alive: once the node has stopped (its
 * flush bounded), an export still waiting on a collector that does not answer does not hold
 * the exit for the exporter's own timeout. While the node runs, its pool and timers do.
 */
async function unrefAgent(protocol: string): Promise<http.Agent> {
  const { Agent } = protocol === 'http:' ? await import('node:http') : await import('node:https');
  const agent = new Agent({ keepAlive: true });
  const create = agent.createConnection.bind(agent);
  agent.createConnection = (options, callback) => {
    const socket = create(options, callback);
    (socket as { unref?: () => void } | null | undefined)?.unref?.();
    return socket;
  };
  return agent;
}

type ExportDone = Parameters<SpanExporter['export']>[1];

/**
 * The exporter, saying in the node's log when spans could not be sent: once, until they can
 * again. abandon() answers the exports still in flight as failed: the batch processor then
 * clears its export timer (30 s, which would otherwise keep a stopped node's process alive).
 */
class LoggedExporter implements SpanExporter {
  private failing = false;
  /** The exports in flight (a few batches at most): their callbacks, each answered once. */
  private readonly pending = new Set<ExportDone>();

  constructor(
    private readonly exporter: SpanExporter,
    private readonly endpoint: string,
    private readonly log: Logger,
  ) {}

  export(spans: ReadableSpan[], done: ExportDone): void {
    this.pending.add(done);
    this.exporter.export(spans, (result) => {
      if (!this.pending.delete(done)) return;
      // ExportResultCode.SUCCESS is 0 (the enum lives in @opentelemetry/core).
      if ((result.code as number) === 0) {
        if (this.failing) this.log.info({ endpoint: this.endpoint }, 'tracing: spans exported again');
        this.failing = false;
      } else if (!this.failing) {
        this.failing = true;
        this.log.warn({ endpoint: this.endpoint, spans: spans.length, err: result.error?.message }, 'tracing: could not export spans (dropped; said once until it works again)');
      }
      done(result);
    });
  }

  abandon(): void {
    // ExportResultCode.FAILED is 1.
    for (const done of this.pending) done({ code: 1, error: new Error('abandoned: the node stopped') });
    this.pending.clear();
  }

  shutdown(): Promise<void> {
    return this.exporter.shutdown();
  }

  forceFlush(): Promise<void> {
    return this.exporter.forceFlush?.() ?? Promise.resolve();
  }
}
