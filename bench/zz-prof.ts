import { setUpBench, timedRun } from './lib.js';
const bench = await setUpBench(['--max-tasks', '32']);
const cpu: { text?: string } = {};
const rate = await timedRun(bench, 8000, undefined, cpu);
console.log(rate.toFixed(0), cpu.text);
await bench.close();
