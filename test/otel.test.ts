// Traces (docs/tracing.md): a node with tracing on exports one span per run to an OTLP/HTTP
// collector — here a small HTTP server of the test's own that decodes the JSON bodies the
// SDK's exporter sends — and gives each task TRACEPARENT; params.traceparent continues a
// submitter's trace. Real nodes (a child `pg-tasks node`, and one in-process), real processes.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, describe, it } from 'node:test';
import { children, killChild, spawnNode, withOutput } from './helpers/child-node.js';
import { nextEvent } from './helpers/events.js';
import { addTask, startNode, tempDir, useTestDatabase, waitEnded } from './helpers/node.js';
import { until } from './helpers/wait.js';
import { formatTraceParent, parseTraceParent } from '../src/node/tracing/traceparent.js';

const db = useTestDatabase('otel');

after(async () => {
  await Promise.all([...children].map((child) => killChild(child)));
});

type Attributes = Record<string, string | number | boolean | null>;

interface ReceivedSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: number;
  startNs: bigint;
  endNs: bigint;
  attributes: Attributes;
  events: Array<{ name: string; attributes: Attributes }>;
  status: { code: number; message: string };
  resource: Attributes;
}

interface OtlpValue {
  stringValue?: string;
  intValue?: number | string;
  doubleValue?: number;
  boolValue?: boolean;
}
type OtlpAttributes = Array<{ key: string; value: OtlpValue }> | undefined;
interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  startTimeUnixNano: string | number;
  endTimeUnixNano: string | number;
  attributes?: OtlpAttributes;
  events?: Array<{ name: string; attributes?: OtlpAttributes }>;
  status?: { code?: number; message?: string };
}
interface OtlpTraces {
  resourceSpans: Array<{ resource?: { attributes?: OtlpAttributes }; scopeSpans: Array<{ spans?: OtlpSpan[] }> }>;
}

function attributes(list: OtlpAttributes): Attributes {
  const out: Attributes = {};
  for (const { key, value } of list ?? []) {
    out[key] = value.stringValue ?? (value.intValue !== undefined ? Number(value.intValue) : undefined) ?? value.doubleValue ?? value.boolValue ?? null;
  }
  return out;
}

/**
 * An OTLP/HTTP collector on 127.0.0.1: keeps the spans it is sent (JSON, on /v1/traces).
 * `answer: false`: it reads each request and never answers (a collector that hangs).
 */
class Collector {
  readonly spans: ReceivedSpan[] = [];
  requests = 0;
  private readonly server: http.Server;

  constructor(answer = true) {
    this.server = http.createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8').on('data', (s: string) => (body += s));
      req.on('end', () => {
        this.requests++;
        if (!answer) return;
        if (req.method !== 'POST' || req.url !== '/v1/traces' || !req.headers['content-type']?.startsWith('application/json')) {
          res.writeHead(400).end();
          return;
        }
        for (const rs of (JSON.parse(body) as OtlpTraces).resourceSpans) {
          const resource = attributes(rs.resource?.attributes);
          for (const ss of rs.scopeSpans) {
            for (const s of ss.spans ?? []) {
              this.spans.push({
                traceId: s.traceId, spanId: s.spanId, parentSpanId: s.parentSpanId ?? '', name: s.name, kind: s.kind,
                startNs: BigInt(s.startTimeUnixNano), endNs: BigInt(s.endTimeUnixNano), attributes: attributes(s.attributes),
                events: (s.events ?? []).map((e) => ({ name: e.name, attributes: attributes(e.attributes) })),
                status: { code: s.status?.code ?? 0, message: s.status?.message ?? '' }, resource,
              });
            }
          }
        }
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
  }

  async listen(): Promise<string> {
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  span(taskId: number): ReceivedSpan | undefined {
    return this.spans.find((s) => s.attributes['pgtasks.task.id'] === taskId);
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** A task that writes its TRACEPARENT (empty when it has none) to `file`, then exits `code`. */
function writesTraceparent(file: string, code = 0): string[] {
  return ['sh', '-c', 'printf %s "$TRACEPARENT" > "$1"; exit "$2"', 'sh', file, String(code)];
}

/** SIGTERM, and the child's own exit (code, signal): a liveness bound only. */
async function stopChild(child: import('node:child_process').ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  children.delete(child);
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  child.kill('SIGTERM');
  // A liveness bound only: a node that has not stopped in a minute is stuck (and fails the test).
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const [code, signal] = await exited;
  clearTimeout(timer);
  return { code, signal };
}

const SUBMITTED = { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7' };

describe('traces', () => {
  it('--otel: a span per run, claim to end, with its attributes; the task sees its TRACEPARENT; params.traceparent is its parent (not sampled: no span); CF is an error; the stop flushes', async (t) => {
    const collector = new Collector();
    const url = await collector.listen();
    try {
      const dir = tempDir('otel');
      const group = 1;
      const joined = await addTask(db, writesTraceparent(`${dir}/joined`), { group, params: { traceparent: `00-${SUBMITTED.traceId}-${SUBMITTED.spanId}-01`, other: 1 } });
      const failed = await addTask(db, writesTraceparent(`${dir}/failed`, 3), { group });
      const invalid = await addTask(db, writesTraceparent(`${dir}/invalid`), { group, params: { traceparent: `00-${SUBMITTED.traceId.toUpperCase()}-${SUBMITTED.spanId}-01` } });
      const unsampled = await addTask(db, writesTraceparent(`${dir}/unsampled`), { group, params: { traceparent: `00-${SUBMITTED.traceId}-${SUBMITTED.spanId}-00` } });
      // The general endpoint (the exporter adds /v1/traces). No scheduled export in the test's
      // time: the spans reach the collector only by the flush of the node's stop.
      const node = spawnNode(db.url, ['--otel', '--worker-id', '1', '--group', String(group)], { OTEL_EXPORTER_OTLP_ENDPOINT: url, OTEL_BSP_SCHEDULE_DELAY: '600000' });
      await withOutput(t, node.output, async () => {
        await waitEnded(db, [joined, failed, invalid, unsampled]);
        assert.equal(collector.requests, 0, 'spans are exported in batches, here at the stop');
        assert.deepEqual(await stopChild(node.child), { code: 0, signal: null });
        assert.equal(collector.spans.length, 3, 'one span per run, but for the run whose parent is not sampled');

        const [a, b, c] = [collector.span(joined)!, collector.span(failed)!, collector.span(invalid)!];
        assert.ok(a && b && c, 'a span for each task');
        assert.equal(a.resource['service.name'], 'pg-tasks');
        assert.equal(a.name, 'run');
        assert.equal(a.kind, 5, 'SPAN_KIND_CONSUMER');
        assert.deepEqual(
          { ...a.attributes },
          {
            'pgtasks.task.id': joined, 'pgtasks.run.attempt': 1, 'pgtasks.group.id': group, 'pgtasks.worker.id': 1,
            'pgtasks.node.name': a.attributes['pgtasks.node.name'], 'pgtasks.run.state': 'CS', 'pgtasks.run.end_reason': 'completed', 'process.exit.code': 0,
          },
        );
        assert.match(String(a.attributes['pgtasks.node.name']), /:w1$/);
        assert.equal(a.status.code, 0, 'CS leaves the status unset');
        assert.ok(a.endNs > a.startNs);
        // The span begins at the claim, before the process: its start event comes after.
        const started = a.events.find((e) => e.name === 'process started');
        assert.ok(started && typeof started.attributes['process.pid'] === 'number' && started.attributes['process.pid'] > 0, 'a process started event with its pid');

        // The submitter's trace goes on, and the task's own spans would join it under the run's.
        assert.equal(a.traceId, SUBMITTED.traceId);
        assert.equal(a.parentSpanId, SUBMITTED.spanId);
        assert.equal(readFileSync(`${dir}/joined`, 'utf8'), `00-${SUBMITTED.traceId}-${a.spanId}-01`);

        assert.equal(b.attributes['pgtasks.run.state'], 'CF');
        assert.equal(b.attributes['pgtasks.run.end_reason'], 'exit_code');
        assert.equal(b.attributes['process.exit.code'], 3);
        assert.deepEqual(b.status, { code: 2, message: 'exit_code: exit code 3' }, 'STATUS_CODE_ERROR');
        assert.equal(b.parentSpanId, '', 'no params.traceparent: a trace of its own');
        assert.equal(readFileSync(`${dir}/failed`, 'utf8'), `00-${b.traceId}-${b.spanId}-01`);

        // Upper-case hex is not a traceparent: ignored, the run starts a trace of its own.
        assert.equal(c.parentSpanId, '');
        assert.notEqual(c.traceId, SUBMITTED.traceId);
        assert.equal(readFileSync(`${dir}/invalid`, 'utf8'), `00-${c.traceId}-${c.spanId}-01`);
        assert.equal(new Set([a.traceId, b.traceId, c.traceId]).size, 3);

        // A parent that is not sampled: no span recorded, and the task is told not to sample.
        assert.equal(collector.span(unsampled), undefined);
        assert.match(readFileSync(`${dir}/unsampled`, 'utf8'), new RegExp(`^00-${SUBMITTED.traceId}-(?!${SUBMITTED.spanId})[0-9a-f]{16}-00$`));
      });
    } finally {
      await collector.close();
    }
  });

  it('an OTLP endpoint in the environment turns it on; progress becomes span events; a cancelled run is not an error', async () => {
    const collector = new Collector();
    const url = await collector.listen();
    const saved = process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT;
    // The in-process node's exporter reads it as the node starts.
    process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT = `${url}/v1/traces`;
    try {
      const group = 2;
      const node = await startNode(db, { workerId: 2, groupId: group });
      const id = await addTask(db, ['sleep', '600'], { group });
      await nextEvent(node, 'run:started', (e) => e.taskId === id);
      // What the control channel (fd 3) publishes for a task's progress line.
      node.events.publish('run:progress', { taskId: id, attempt: 1, progress: 0.5, message: 'half way' });
      node.events.publish('run:progress', { taskId: id, attempt: 1, progress: null, message: 'no number' });
      await db.query("UPDATE long_task.task SET state_id = 'AC' WHERE id = $1", [id]);
      await waitEnded(db, [id]);
      // Exported on the SDK's schedule (5 s), or by the stop's flush, whichever comes first.
      await node.shutdown();
      const span = await until(() => collector.span(id), 'the span of the cancelled run');
      assert.equal(span.attributes['pgtasks.run.state'], 'CC');
      assert.equal(span.attributes['pgtasks.run.end_reason'], 'cancelled');
      assert.equal(span.status.code, 0, 'a cancel is not an error');
      assert.deepEqual(span.events.filter((e) => e.name === 'progress').map((e) => e.attributes), [
        { 'pgtasks.progress': 0.5, 'pgtasks.progress.message': 'half way' },
        { 'pgtasks.progress.message': 'no number' },
      ]);
    } finally {
      if (saved === undefined) delete process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT;
      else process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT = saved;
      await collector.close();
    }
  });

  it('a collector that never answers does not hold the stop: the flush is bounded', async (t) => {
    const collector = new Collector(false);
    const url = await collector.listen();
    try {
      const group = 3;
      const id = await addTask(db, ['true'], { group });
      // The exporter's and the batch processor's timeouts far away: only the node's bound ends the wait.
      const node = spawnNode(db.url, ['--worker-id', '3', '--group', String(group)], {
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${url}/v1/traces`, OTEL_EXPORTER_OTLP_TIMEOUT: '600000', OTEL_BSP_EXPORT_TIMEOUT: '600000', OTEL_BSP_SCHEDULE_DELAY: '600000',
      });
      await withOutput(t, node.output, async () => {
        await waitEnded(db, [id]);
        // The node's bound is 5 s (TRACING_FLUSH_MS); stopChild's is a minute.
        assert.deepEqual(await stopChild(node.child), { code: 0, signal: null });
        assert.equal(collector.requests, 1, 'the flush was sent');
        assert.match(node.output(), /the collector did not take the last spans in time/);
      });
    } finally {
      await collector.close();
    }
  });

  it('without tracing a task gets no TRACEPARENT', async () => {
    assert.equal(process.env.OTEL_EXPORTER_OTLP_ENDPOINT ?? process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, undefined, 'the test runs without an OTLP endpoint');
    const dir = tempDir('otel-off');
    const group = 4;
    const node = await startNode(db, { workerId: 4, groupId: group });
    const id = await addTask(db, ['sh', '-c', 'printf %s "${TRACEPARENT-unset}" > "$1"', 'sh', `${dir}/env`], { group, params: { traceparent: `00-${SUBMITTED.traceId}-${SUBMITTED.spanId}-01` } });
    await waitEnded(db, [id]);
    await node.shutdown();
    assert.equal(readFileSync(`${dir}/env`, 'utf8'), 'unset');
  });
});

describe('traceparent', () => {
  const [t, p] = [SUBMITTED.traceId, SUBMITTED.spanId];

  it('reads the W3C form, and a later version\'s first four fields', () => {
    assert.deepEqual(parseTraceParent(`00-${t}-${p}-01`), { traceId: t, spanId: p, flags: 1 });
    assert.deepEqual(parseTraceParent(`00-${t}-${p}-00`), { traceId: t, spanId: p, flags: 0 });
    assert.deepEqual(parseTraceParent(`01-${t}-${p}-03-whatever-comes`), { traceId: t, spanId: p, flags: 3 });
    assert.equal(formatTraceParent({ traceId: t, spanId: p, flags: 1 }), `00-${t}-${p}-01`);
  });

  it('refuses anything else', () => {
    for (const bad of [
      undefined, null, 42, {}, '', `00-${t}-${p}`, `00-${t}-${p}-01-extra`, `ff-${t}-${p}-01`, `00-${t.toUpperCase()}-${p}-01`,
      `00-${'0'.repeat(32)}-${p}-01`, `00-${t}-${'0'.repeat(16)}-01`, `00-${t}-${p}-1`, ` 00-${t}-${p}-01`, `01-${t}-${p}-01-${'x'.repeat(600)}`,
    ]) {
      assert.equal(parseTraceParent(bad), null, JSON.stringify(bad));
    }
  });
});
