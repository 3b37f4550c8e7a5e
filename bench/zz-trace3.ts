import path from 'node:path';
import { setUpBench, readStamp } from './lib.js';
import { readStatements, resetStatements } from './statements.js';
const bench = await setUpBench(['--max-tasks', '8'], { statements: true });
await resetStatements(bench.client, bench.nodeRole!);
for (let i = 0; i < 30; i++) {
  const file = path.join(bench.dir, `s${i}`);
  await bench.client.query(`INSERT INTO "${bench.schema}".task (state_id, command, next_start) VALUES ('DR', $1, now() + interval '100 ms')`, [[...bench.stamp, file]]);
  await readStamp(file);
}
for (const s of await readStatements(bench.client, bench.nodeRole!, bench.schema)) console.log(s.name.slice(0, 60), s.calls, s.meanMs.toFixed(3), s.maxMs.toFixed(3));
await bench.close();
