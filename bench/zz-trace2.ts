import path from 'node:path';
import { setUpBench, readStamp, nowMs } from './lib.js';
const bench = await setUpBench(['--max-tasks', '8']);
for (let i = 0; i < 12; i++) {
  const file = path.join(bench.dir, `s${i}`);
  const sent = nowMs();
  await bench.client.query(`INSERT INTO "${bench.schema}".task (state_id, command) VALUES ('AW', $1)`, [[...bench.stamp, file]]);
  const acked = nowMs();
  const st = await readStamp(file);
  console.error('BENCH sent', sent.toFixed(2), 'acked', acked.toFixed(2), 'started', st.toFixed(2));
  await new Promise((r) => setTimeout(r, 20));
}
await bench.close();
