// A node's /metrics, /healthz and /readyz: scraped while its tasks run.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { serveNode, type NodeServer } from '../src/http/node-server.js';
import { runCli } from './helpers/cli.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { addTask, startNode, stopAllNodes, tempDir, testLogger, waitEnded } from './helpers/node.js';
import { until } from './helpers/wait.js';

let db: TestDatabase;
const servers: NodeServer[] = [];

before(async () => {
  db = await createTestDatabase('metrics');
});

after(async () => {
  await Promise.all(servers.map((s) => s.close()));
  await stopAllNodes();
  await db.close();
});

async function get(url: string): Promise<{ status: number; body: string; type: string }> {
  const res = await fetch(url);
  return { status: res.status, body: await res.text(), type: res.headers.get('content-type') ?? '' };
}

/** The value of one sample of the exposition, e.g. sample(text, 'pgtasks_runs_started_total'). */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return undefined;
}

describe('metrics and health', () => {
  it('counts runs by outcome, slots, claims, lease and output while tasks run; health says active', async () => {
    const node = await startNode(db, { workerId: 1, groupId: 1, maxTasks: 4, nodeName: 'metrics-a' });
    const server = await serveNode(node, { host: '127.0.0.1', port: 0 }, testLogger);
    servers.push(server);
    await until(() => node.state === 'active', 'the node to be active');

    const gate = path.join(tempDir('metrics-gate'), 'open');
    const gated = await Promise.all([1, 2].map(() => addTask(db, ['sh', '-c', 'echo hello; while [ ! -e "$0" ]; do sleep 0.05; done', gate], { group: 1 })));
    const ok = await Promise.all([1, 2, 3].map(() => addTask(db, ['true'], { group: 1 })));
    const failed = await addTask(db, ['sh', '-c', 'exit 3'], { group: 1 });
    // Waiting in a group no node serves: the queue depth shows them.
    await Promise.all([1, 2, 3, 4, 5].map(() => addTask(db, ['true'], { group: 77 })));

    // While two gated tasks run: two slots busy.
    await waitEnded(db, [...ok, failed]);
    await until(async () => sample((await get(`${server.url}/metrics`)).body, 'pgtasks_slots_running') === 2, 'two running in the scrape');
    const during = await get(`${server.url}/metrics`);
    assert.equal(during.status, 200);
    assert.match(during.type, /^text\/plain; version=0\.0\.4/);
    assert.equal(sample(during.body, 'pgtasks_slots_free'), 2);
    assert.equal(sample(during.body, 'pgtasks_queue_depth', { task_group: '77', kind: 'ready' }), 5);
    assert.equal(sample(during.body, 'pgtasks_lease_held'), 1);
    assert.equal(sample(during.body, 'pgtasks_listener_connected'), 1);
    assert.equal(sample(during.body, 'pgtasks_node_state', { state: 'active' }), 1);
    // Served after the node started (the CLI serves before): the gain came before the counter.
    assert.equal(sample(during.body, 'pgtasks_lease_gained_total'), 0);

    writeFileSync(gate, '');
    await waitEnded(db, gated);
    const text = (await get(`${server.url}/metrics`)).body;
    assert.equal(sample(text, 'pgtasks_runs_started_total', { worker: '1', group: '1' }), 6);
    assert.equal(sample(text, 'pgtasks_runs_ended_total', { state: 'CS', end_reason: 'completed' }), 5);
    assert.equal(sample(text, 'pgtasks_runs_ended_total', { state: 'CF', end_reason: 'exit_code' }), 1);
    assert.equal(sample(text, 'pgtasks_run_duration_seconds_count', { state: 'CS' }), 5);
    assert.equal(sample(text, 'pgtasks_start_latency_seconds_count'), 6);
    assert.equal(sample(text, 'pgtasks_claimed_tasks_total'), 6);
    assert.ok(sample(text, 'pgtasks_claims_total')! >= 1);
    assert.equal(sample(text, 'pgtasks_claim_rows_count'), sample(text, 'pgtasks_claims_total'));
    assert.equal(sample(text, 'pgtasks_output_bytes_total'), 12, 'two "hello\\n"');
    assert.ok(sample(text, 'pgtasks_output_flushes_total')! >= 1);
    assert.equal(sample(text, 'pgtasks_slots_running'), 0);
    assert.ok(sample(text, 'pgtasks_process_resident_memory_bytes')! > 0);
    for (const name of ['pgtasks_lease_renewals_total', 'pgtasks_lease_lost_total', 'pgtasks_listener_reconnects_total', 'pgtasks_schedule_fires_total', 'pgtasks_schedule_skips_total', 'pgtasks_result_write_retries_total', 'pgtasks_results_rejected_total', 'pgtasks_output_dropped_bytes_total']) {
      assert.equal(sample(text, name), 0, name);
    }

    assert.deepEqual(await get(`${server.url}/healthz`), { status: 200, body: 'ok: node metrics-a is active\n', type: 'text/plain; charset=utf-8' });
    assert.equal((await get(`${server.url}/readyz`)).body, 'ready: active, holding the lease of worker 1, listening\n');
    assert.equal((await get(`${server.url}/nope`)).status, 404);
    assert.equal((await fetch(`${server.url}/metrics`, { method: 'POST' })).status, 405);
  });

  it('a standby is alive but not ready, and says why; a stopped node is not ready', async () => {
    await startNode(db, { workerId: 2, groupId: 2, nodeName: 'metrics-holder' });
    const standby = await startNode(db, { workerId: 2, groupId: 2, nodeName: 'metrics-standby' });
    const server = await serveNode(standby, { host: '127.0.0.1', port: 0 }, testLogger);
    servers.push(server);
    await until(() => standby.state === 'standby', 'the second node to stand by');
    assert.equal((await get(`${server.url}/healthz`)).status, 200);
    assert.deepEqual(await get(`${server.url}/readyz`), { status: 503, body: 'not ready: standby, worker 2 is held by another node\n', type: 'text/plain; charset=utf-8' });
    assert.equal(sample((await get(`${server.url}/metrics`)).body, 'pgtasks_node_state', { state: 'standby' }), 1);
    await standby.shutdown('cancel', 'test');
    assert.deepEqual([(await get(`${server.url}/readyz`)).status, (await get(`${server.url}/readyz`)).body], [503, 'not ready: stopped\n']);
  });

  it('the CLI refuses a bad --metrics-port in one line', async () => {
    const bad = await runCli(db.url, ['node', '--metrics-port', 'http']);
    assert.equal(bad.code, 1);
    assert.equal(bad.stderr, 'pg-tasks: --metrics-port must be an integer, got "http"\n');
    const big = await runCli(db.url, ['node', '--metrics-port', '70000']);
    assert.equal(big.code, 1);
    assert.match(big.stderr, /--metrics-port must be a port \(0 to 65535\) or off, got 70000/);
  });
});
