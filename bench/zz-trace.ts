// Temporary probe: one-shot schedule timings with a traced node in-process.
import path from 'node:path';
import { setUpBench, readStamp } from './lib.js';
const bench = await setUpBench(['--max-tasks', '8', '--log-level', 'debug']);
for (let i = 0; i < 8; i++) {
  const file = path.join(bench.dir, `s${i}`);
  const { rows } = await bench.client.query<{ due: Date }>(
    `INSERT INTO "${bench.schema}".task (state_id, command, next_start) VALUES ('DR', $1, now() + interval '300 ms') RETURNING next_start AS due`,
    [[...bench.stamp, file]],
  );
  const st = await readStamp(file);
  console.log('due', rows[0]!.due.getTime() % 100000, 'start', (st % 100000).toFixed(2), 'delay', (st - rows[0]!.due.getTime()).toFixed(2));
}
await bench.close();
