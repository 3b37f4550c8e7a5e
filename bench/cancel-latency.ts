// Cancel latency: to a running task's process receiving SIGTERM (it stamps the instant), from the
// moment the UPDATE to AC is sent and from its acknowledgement (client clock), p50/p95/p99.
//   npx tsx bench/cancel-latency.ts [--quick] [--fast] [--n 100]
import path from 'node:path';
import { nowMs, readStamp, setUpBench, metric, arg, latencyText, percentiles } from './lib.js';

const quick = process.argv.includes('--quick');
const n = Number(arg('--n') ?? (quick ? 10 : 100));

const bench = await setUpBench(['--max-tasks', '8']);
const s = `"${bench.schema}"`;
const send: number[] = [];
const ack: number[] = [];
try {
  for (let i = 0; i < n; i++) {
    const file = path.join(bench.dir, `c${i}`);
    const { rows } = await bench.client.query<{ id: number }>(`INSERT INTO ${s}.task (state_id, command) VALUES ('AW', $1) RETURNING id`, [[...bench.stampTerm, file]]);
    const id = rows[0]!.id;
    // Running, and its pid recorded (the program is waiting for its signal by then).
    for (;;) {
      const r = await bench.client.query<{ pid: number | null }>(`SELECT pid FROM ${s}.task WHERE id = $1 AND state_id = 'AE'`, [id]);
      if (r.rows[0]?.pid) break;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    await new Promise((resolve) => setTimeout(resolve, 20)); // let the node go idle
    const sent = nowMs();
    await bench.client.query(`UPDATE ${s}.task SET state_id = 'AC' WHERE id = $1`, [id]);
    const acked = nowMs();
    const received = await readStamp(file);
    send.push(received - sent);
    ack.push(received - acked);
  }
} finally {
  await bench.close();
}
metric('cancel.ack.p50', Number(percentiles(ack).p50));
metric('cancel.send.p50', Number(percentiles(send).p50));
console.log(`cancel latency, ${n} running tasks (→ SIGTERM received): ${latencyText({ send, ack })}`);
