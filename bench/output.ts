// The cost of live output (task_output, written while runs print):
// - N tasks at 32 that each print 16 KiB, with live output on (the default) and off
//   (--output-keep 0: only the tail on the task row), in alternating rounds;
// - N × /bin/true at 31 while one more task prints as fast as it can (`yes`), against the same
//   with nothing printing, and against the same printer with live output off (--output-keep 0):
//   the last pair is what writing output live costs the node's claims, apart from the CPU that
//   `yes` and reading its pipe take;
// - statements per MB: the flushes (one NOTIFY each) the heavy printer cost, over what it printed.
//   npx tsx bench/output.ts [--quick] [--n 3000] [--rounds 2]
import pg from 'pg';
import { setUpBench, metric, arg, timedRun, type Bench } from './lib.js';

const quick = process.argv.includes('--quick');
const n = Number(arg('--n') ?? (quick ? 200 : 3000));
const rounds = Number(arg('--rounds') ?? (quick ? 1 : 2));
const CONCURRENCY = 32;
const PRINT_16K = ['sh', '-c', 'head -c 16384 /dev/zero'];

async function printing(live: boolean): Promise<number> {
  const bench = await setUpBench(['--max-tasks', String(CONCURRENCY), ...(live ? [] : ['--output-keep', '0'])]);
  const s = `"${bench.schema}"`;
  const rate = await timedRun(bench, n, () => bench.client.query(`INSERT INTO ${s}.task (state_id, command) SELECT 'AW', $2 FROM generate_series(1, $1)`, [n, PRINT_16K]));
  await bench.close();
  return rate;
}

/** /bin/true at 31 slots, with one more slot running `yes` (or nothing); rate, and the printer's figures. */
async function besidePrinter(withPrinter: boolean, live = true): Promise<{ rate: number; bytes: number; flushes: number; seconds: number }> {
  // 31 slots for /bin/true either way; the printer has a 32nd.
  const bench = await setUpBench(['--max-tasks', String(withPrinter ? CONCURRENCY : CONCURRENCY - 1), ...(live ? [] : ['--output-keep', '0'])]);
  const s = `"${bench.schema}"`;
  let printer: number | null = null;
  let flushes = 0;
  const listener = new pg.Client({ connectionString: bench.url });
  await listener.connect();
  listener.on('notification', (m) => {
    const payload = JSON.parse(m.payload ?? '{}') as { e?: string; ids?: number[] };
    if (payload.e === 'output' && printer !== null && (!payload.ids || payload.ids.includes(printer))) flushes++;
  });
  await listener.query(`LISTEN "${bench.schema}"`);
  if (withPrinter) {
    const { rows } = await bench.client.query<{ id: string }>(`INSERT INTO ${s}.task (state_id, command) VALUES ('AW', '{yes}') RETURNING id`);
    printer = Number(rows[0]!.id);
    await waitFor(bench, live ? `SELECT 1 FROM ${s}.task_output WHERE task_id = ${printer}` : `SELECT 1 FROM ${s}.task WHERE id = ${printer} AND state_id = 'AE'`);
  }
  const startedAt = performance.now();
  flushes = 0;
  const { rows: before } = await bench.client.query<{ end: string | null }>(`SELECT max(pos + length(data)) AS end FROM ${s}.task_output WHERE task_id = $1`, [printer ?? 0]);
  // timedRun waits for every task to end: the printer is cancelled when the others are done.
  const rate = await timedRun(bench, n, async () => {
    await bench.client.query(`INSERT INTO ${s}.task (state_id, command) SELECT 'AW', '{/bin/true}' FROM generate_series(1, $1)`, [n]);
    if (printer !== null) void stopPrinterWhenDone(bench, printer, n);
  }).catch((error: Error) => {
    // The cancelled printer ends CC, not CS: that is the one task timedRun may not count.
    if (printer !== null && /^1 tasks did not complete$/.test(error.message)) return n / ((performance.now() - startedAt) / 1000);
    throw error;
  });
  const seconds = (performance.now() - startedAt) / 1000;
  const { rows: after } = await bench.client.query<{ end: string | null }>(`SELECT max(pos + length(data)) AS end FROM ${s}.task_output WHERE task_id = $1`, [printer ?? 0]);
  await listener.end();
  await bench.close();
  return { rate, bytes: Number(after[0]?.end ?? 0) - Number(before[0]?.end ?? 0), flushes, seconds };
}

async function stopPrinterWhenDone(bench: Bench, printer: number, count: number): Promise<void> {
  const s = `"${bench.schema}"`;
  await waitFor(bench, `SELECT 1 FROM ${s}.task WHERE state_id = 'CS' HAVING count(*) >= ${count}`);
  await bench.client.query(`UPDATE ${s}.task SET state_id = 'AC' WHERE id = $1`, [printer]);
}

async function waitFor(bench: Bench, sql: string): Promise<void> {
  for (;;) {
    if ((await bench.client.query(sql)).rowCount) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
const live: number[] = [], off: number[] = [], quiet: number[] = [], loud: number[] = [], loudOff: number[] = [];
let printed = 0, flushes = 0, printSeconds = 0;
for (let r = 0; r < rounds; r++) {
  live.push(await printing(true));
  off.push(await printing(false));
  quiet.push((await besidePrinter(false)).rate);
  const beside = await besidePrinter(true);
  loud.push(beside.rate);
  loudOff.push((await besidePrinter(true, false)).rate);
  printed += beside.bytes;
  flushes += beside.flushes;
  printSeconds += beside.seconds;
}
const mb = printed / 2 ** 20;
metric('output.live.ratio', mean(live) / mean(off));
metric('output.printer.ratio', mean(loud) / mean(quiet));
metric('output.printerLive.ratio', mean(loud) / mean(loudOff));
metric('output.statementsPerMB', flushes / mb);
console.log(
  `live output, ${n} tasks at ${CONCURRENCY} each printing 16 KiB, mean of ${rounds} alternating rounds: live output on ${mean(live).toFixed(0)}/s, ` +
    `off (--output-keep 0) ${mean(off).toFixed(0)}/s (ratio ${(mean(live) / mean(off)).toFixed(2)})`,
);
console.log(
  `live output beside a heavy printer: ${n} × /bin/true at 31 while \`yes\` prints ${(mb / printSeconds).toFixed(0)} MB/s: ${mean(loud).toFixed(0)}/s, ` +
    `vs ${mean(quiet).toFixed(0)}/s with nothing printing (ratio ${(mean(loud) / mean(quiet)).toFixed(2)}: \`yes\` and the node reading its pipe take CPU on this machine's cores), ` +
    `vs ${mean(loudOff).toFixed(0)}/s beside the same printer with --output-keep 0 (ratio ${(mean(loud) / mean(loudOff)).toFixed(2)}: what writing it live costs); the printer's ${mb.toFixed(0)} MB cost ${flushes} statements ` +
    `(${(flushes / mb).toFixed(3)} per MB, ${(flushes / printSeconds).toFixed(1)} a second)`,
);
