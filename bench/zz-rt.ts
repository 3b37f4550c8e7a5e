import pg from 'pg';
const c = new pg.Client({ connectionString: process.env.DATABASE_URL });
await c.connect();
const t: number[] = [];
for (let i = 0; i < 200; i++) { const s = performance.now(); await c.query('SELECT 1'); t.push(performance.now() - s); }
t.sort((a, b) => a - b);
console.log('SELECT 1 p50', t[100]!.toFixed(3), 'p90', t[180]!.toFixed(3));
const u: number[] = [];
for (let i = 0; i < 50; i++) { await new Promise((r) => setTimeout(r, 20)); const s = performance.now(); await c.query('SELECT 1'); u.push(performance.now() - s); }
u.sort((a, b) => a - b);
console.log('SELECT 1 after 20ms idle p50', u[25]!.toFixed(3), 'p90', u[45]!.toFixed(3));
await c.query('CREATE TEMP TABLE x (a int)');
const w: number[] = [];
for (let i = 0; i < 50; i++) { await new Promise((r) => setTimeout(r, 20)); const s = performance.now(); await c.query('INSERT INTO x VALUES (1)'); w.push(performance.now() - s); }
w.sort((a, b) => a - b);
console.log('INSERT temp after idle p50', w[25]!.toFixed(3));
await c.query('CREATE TABLE IF NOT EXISTS zz_x (a int)');
const v: number[] = [];
for (let i = 0; i < 50; i++) { await new Promise((r) => setTimeout(r, 20)); const s = performance.now(); await c.query('INSERT INTO zz_x VALUES (1)'); v.push(performance.now() - s); }
v.sort((a, b) => a - b);
console.log('INSERT durable after idle p50', v[25]!.toFixed(3), 'p90', v[45]!.toFixed(3));
await c.query('DROP TABLE zz_x');
await c.end();
