import { it } from 'node:test';
import { createTestDatabase } from './helpers/db.js';
import { getTask, startNode, stopAllNodes } from './helpers/node.js';
import { proxyFor } from './helpers/proxy.js';
import { until } from './helpers/wait.js';

it('probe: fenced kill with requeue policy', async (t) => {
  const db = await createTestDatabase('probe');
  const { proxy, url } = await proxyFor(db.url);
  try {
    const node = await startNode({ ...db, url }, { workerId: 9, groupId: 9, leaseSeconds: 3, nodeName: 'probe' });
    const { rows } = await db.query("INSERT INTO long_task.task (command, group_id, state_id, recover_policy) VALUES ('{sleep,30}', 9, 'AW', 'requeue') RETURNING id");
    const id = Number(rows[0]!.id);
    await until(async () => (await getTask(db, id)).pid, 'pid');
    proxy.pause();
    await until(() => node.state !== 'active', 'fence', 10_000);
    t.diagnostic(`fenced; task ${JSON.stringify(await getTask(db, id).then((r) => [r.state_id, r.error]))}`);
    await new Promise((r) => setTimeout(r, 700));
    proxy.resume();
    for (let i = 0; i < 16; i++) {
      const r = await getTask(db, id);
      t.diagnostic(`${i * 500} ms after resume: ${r.state_id} ${r.error ?? ''} node=${node.state}`);
      await new Promise((res) => setTimeout(res, 500));
    }
  } finally {
    await stopAllNodes();
    await proxy.close();
    await db.close();
  }
});
