// Slot turnover (issue 28): N × /bin/true on one node at a concurrency, as it runs now (the run
// ends written in the claim's statement, the pipes to the spawn helper and the reaper written
// once a turn) and as before (PGTASKS_OLD_TURNOVER=1: ends in statements of their own, a pipe
// write per spawn), in alternating rounds of one run on one server.
// Per task: writing transactions (commits that wrote: txid_current() before and after) and CPU
// µs of the node, its helper processes and this server's PostgreSQL processes (/proc utime +
// stime; the server's ended backends count through its postmaster's reaped time). The machine
// is shared with other work: read the ratios (same run, alternating), not the absolute figures.
//   npx tsx bench/turnover.ts [--quick] [--n 3000] [--rounds 3] [--concurrency 8,32]
import { readFileSync, readdirSync } from 'node:fs';
import { setUpBench, metric, arg, timedRun, type Bench } from './lib.js';

const quick = process.argv.includes('--quick');
const n = Number(arg('--n') ?? (quick ? 200 : 3000));
const rounds = Number(arg('--rounds') ?? (quick ? 1 : 3));
const levels = (arg('--concurrency') ?? '8,32').split(',').map(Number);

interface Proc { ppid: number; own: number; reaped: number }

function processes(): Map<number, Proc> {
  const all = new Map<number, Proc>();
  for (const entry of readdirSync('/proc').filter((e) => /^\d+$/.test(e))) {
    try {
      const text = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
      all.set(Number(entry), { ppid: Number(f[1]), own: Number(f[11]) + Number(f[12]), reaped: Number(f[13]) + Number(f[14]) });
    } catch {
      // Ended while read.
    }
  }
  return all;
}

/** CPU ms so far: the node, its descendants (helpers; not the tasks they reap), and the server whose postmaster is `postmaster`. */
function cpu(nodePid: number, postmaster: number): { node: number; helpers: number; postgres: number } {
  const all = processes();
  const ms = (ticks: number): number => ticks * 10; // USER_HZ 100
  const under = (pid: number, root: number): boolean => {
    for (let p = all.get(pid)?.ppid ?? 0, depth = 0; p > 1 && depth < 20; depth++, p = all.get(p)?.ppid ?? 0) if (p === root) return true;
    return false;
  };
  const out = { node: ms(all.get(nodePid)?.own ?? 0), helpers: 0, postgres: 0 };
  const pm = all.get(postmaster);
  if (pm) out.postgres += ms(pm.own + pm.reaped);
  for (const [pid, p] of all) {
    if (under(pid, nodePid)) out.helpers += ms(p.own);
    else if (p.ppid === postmaster) out.postgres += ms(p.own);
  }
  return out;
}

async function postmasterOf(bench: Bench): Promise<number> {
  const { rows } = await bench.client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  return processes().get(rows[0]!.pid)?.ppid ?? 0;
}

interface Round { rate: number; xacts: number; node: number; helpers: number; postgres: number }

async function round(concurrency: number, separate: boolean): Promise<Round> {
  if (separate) process.env.PGTASKS_OLD_TURNOVER = '1';
  else delete process.env.PGTASKS_OLD_TURNOVER;
  const bench = await setUpBench(['--max-tasks', String(concurrency)]);
  delete process.env.PGTASKS_OLD_TURNOVER;
  try {
    const postmaster = await postmasterOf(bench);
    const xid = async (): Promise<number> => Number((await bench.client.query<{ x: string }>('SELECT txid_current()::text AS x')).rows[0]!.x);
    let before = { node: 0, helpers: 0, postgres: 0 };
    let x0 = 0;
    const rate = await timedRun(bench, n, async () => {
      await bench.client.query(`INSERT INTO "${bench.schema}".task (state_id, command) SELECT 'AW', '{/bin/true}' FROM generate_series(1, $1)`, [n]);
      x0 = await xid();
      before = cpu(bench.node.pid!, postmaster);
    });
    const after = cpu(bench.node.pid!, postmaster);
    // Less the bench's own: its resume, and the two txid_current() calls.
    const xacts = (await xid()) - x0 - 2;
    const per = (k: keyof typeof after): number => ((after[k] - before[k]) * 1000) / n;
    return { rate, xacts: xacts / n, node: per('node'), helpers: per('helpers'), postgres: per('postgres') };
  } finally {
    await bench.close();
  }
}

const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
for (const concurrency of levels) {
  const runs: Record<'one' | 'separate', Round[]> = { one: [], separate: [] };
  for (let r = 0; r < rounds; r++) {
    // Alternating, the order swapped each round: neither path always runs on a warmer server.
    const order = r % 2 === 0 ? [false, true] : [true, false];
    for (const separate of order) runs[separate ? 'separate' : 'one'].push(await round(concurrency, separate));
  }
  const avg = (which: 'one' | 'separate', k: keyof Round): number => mean(runs[which].map((x) => x[k]));
  const fig = (which: 'one' | 'separate'): string =>
    `${avg(which, 'rate').toFixed(0)}/s, ${avg(which, 'xacts').toFixed(2)} writing commits a task, CPU µs a task: node ${avg(which, 'node').toFixed(0)}, ` +
    `helpers ${avg(which, 'helpers').toFixed(0)}, PostgreSQL ${avg(which, 'postgres').toFixed(0)}`;
  const ratio = (k: keyof Round): string => (avg('one', k) / avg('separate', k)).toFixed(2);
  metric(`turnover.${concurrency}.rate.ratio`, avg('one', 'rate') / avg('separate', 'rate'));
  metric(`turnover.${concurrency}.xacts`, avg('one', 'xacts'));
  metric(`turnover.${concurrency}.cpu.us`, avg('one', 'node') + avg('one', 'helpers') + avg('one', 'postgres'));
  console.log(
    `turnover, ${n} × /bin/true at ${concurrency}, mean of ${rounds} alternating rounds (a shared, loaded machine: read the ratios): ` +
      `now ${fig('one')}; before (PGTASKS_OLD_TURNOVER=1) ${fig('separate')}; ` +
      `ratios now/before: rate ${ratio('rate')}, commits ${ratio('xacts')}, node CPU ${ratio('node')}, helpers ${ratio('helpers')}, PostgreSQL ${ratio('postgres')}`,
  );
}
