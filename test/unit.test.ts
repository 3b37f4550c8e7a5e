// Pure logic, no database.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { compilePlaceholders, parseNamedQueries } from '../src/db/queries.js';
import { bindStatements, statement } from '../src/db/statement.js';
import { definitions, loadStatements } from '../src/sql/queries/index.js';
import { loadMigrations } from '../src/db/migrate.js';
import { OutputTail } from '../src/node/process/output-tail.js';
import { taskArgv, taskCwd } from '../src/node/process/task-process.js';
import { startAll, stopAllAtOnce, type NamedService } from '../src/node/services.js';
import { parseDuration, parseTaskId, parseState } from '../src/cli/parse.js';
import { makeLogger } from '../src/cli/logger.js';
import { ROOT } from './helpers/cli.js';

describe('OutputTail', () => {
  it('keeps only the last bytes and says how many were dropped', () => {
    const tail = new OutputTail(10);
    for (let i = 0; i < 100; i++) tail.push(Buffer.from(`line${i}\n`));
    const text = tail.toString();
    assert.ok(text.endsWith('e99\n'), text);
    assert.match(text, /earlier bytes dropped/);
    assert.equal(tail.total, 100 * 6 + 90);
  });
  it('removes NUL bytes, which PostgreSQL text cannot hold', () => {
    const tail = new OutputTail(100);
    tail.push(Buffer.from('a\0b'));
    assert.equal(tail.toString(), 'ab');
  });
  it('keeps everything under the limit unchanged', () => {
    const tail = new OutputTail(100);
    tail.push(Buffer.from('hello\n'));
    tail.push(Buffer.from('world\n'));
    assert.equal(tail.toString(), 'hello\nworld\n');
  });
});

describe('task argv and cwd', () => {
  it('replaces an element that is exactly %TASK, and only that', () => {
    assert.deepEqual(taskArgv({ id: 42, command: ['run', '%TASK', '--id=%TASK', '%TASK%'], cwd: null, params: null }), ['run', '42', '--id=%TASK', '%TASK%']);
  });
  it('resolves a relative cwd against the root dir', () => {
    assert.equal(taskCwd({ id: 1, command: ['x'], cwd: 'jobs/a', params: null }, '/srv'), '/srv/jobs/a');
    assert.equal(taskCwd({ id: 1, command: ['x'], cwd: '/abs', params: null }, '/srv'), '/abs');
    assert.equal(taskCwd({ id: 1, command: ['x'], cwd: null, params: null }, '/srv'), '/srv');
  });
});

describe('SQL files', () => {
  it('parses named blocks', () => {
    const q = parseNamedQueries('-- header\n-- name: a\nSELECT 1;\n\n-- name: b\n-- why\nSELECT 2;\n');
    assert.deepEqual([...q.keys()], ['a', 'b']);
    assert.equal(q.get('a'), 'SELECT 1');
    assert.equal(q.get('b'), '-- why\nSELECT 2');
  });
  it('puts a fragment where a statement names it, and is no statement itself', () => {
    const q = parseNamedQueries('-- fragment: f\nx AS (SELECT 1)\n\n-- name: a\nWITH {{f}} SELECT * FROM {{schema}}.x;\n');
    assert.deepEqual([...q.keys()], ['a']);
    assert.equal(q.get('a'), 'WITH x AS (SELECT 1) SELECT * FROM {{schema}}.x');
    assert.throws(() => parseNamedQueries('-- name: a\nWITH {{g}} SELECT 1;\n'), /query a: no fragment g/);
  });
  it('loads every runtime query with the schema quoted', () => {
    const q = loadStatements('my"schema');
    assert.match(q.claimTasks.text, /"my""schema"\.task/);
    assert.doesNotMatch(q.claimTasks.text, /\{\{schema\}\}/);
  });
  it('numbers named parameters in order of first use, outside comments, strings and casts', () => {
    const q = compilePlaceholders("-- :ignored\nSELECT :b::int, ':no', :a, :b");
    assert.equal(q.text, "-- :ignored\nSELECT $1::int, ':no', $2, $1");
    assert.deepEqual(q.params, ['b', 'a']);
    assert.throws(() => compilePlaceholders('SELECT $1'), /positional parameter \$1/);
  });
  it('sends the values of named parameters in $n order', () => {
    const q = loadStatements('long_task');
    assert.deepEqual(q.setLockPid.values({ workerId: 7, epoch: 3, lockPid: 99 }), [99, 7, 3]);
  });
  it('refuses at load a statement whose parameters differ from its SQL, and SQL without a typed statement', () => {
    assert.throws(() => bindStatements('s', { ...definitions, getTask: statement<{ id: number }>({ id: true }) }), /getTask: the SQL uses \(taskId\), its statement declares \(id\)/);
    const rest: Partial<typeof definitions> = { ...definitions };
    delete rest.getTask;
    assert.throws(() => bindStatements('s', rest as typeof definitions), /query getTask has no typed statement/);
  });
  it('numbers migrations in sequence', () => {
    const migrations = loadMigrations();
    assert.ok(migrations.length >= 1);
    migrations.forEach((m, i) => assert.equal(m.id, i + 1));
  });
});

describe('CLI argument parsing', () => {
  it('parses durations', () => {
    assert.equal(parseDuration('500ms'), 500);
    assert.equal(parseDuration('10s'), 10_000);
    assert.equal(parseDuration('2m'), 120_000);
    assert.equal(parseDuration('0'), 0);
    assert.throws(() => parseDuration('3'), /^InvalidArgumentError: "3" needs a unit \(e\.g\. 3s, 2m, 1h\)$/);
    assert.throws(() => parseDuration('1.5'), /"1\.5" needs a unit/);
    assert.throws(() => parseDuration('ten'), /expected a duration/);
  });
  it('refuses bad task ids and states', () => {
    assert.equal(parseTaskId('7'), 7);
    assert.throws(() => parseTaskId('0'), /positive integer/);
    assert.throws(() => parseTaskId('-3'), /positive integer/);
    assert.throws(() => parseTaskId('x'), /positive integer/);
    assert.equal(parseState('cf'), 'CF');
    assert.throws(() => parseState('XX'), /unknown state/);
  });
});

describe('makeLogger', () => {
  function capture(isTTY: boolean): { stream: PassThrough & { isTTY: boolean }; text: () => string } {
    const stream = Object.assign(new PassThrough(), { isTTY });
    let text = '';
    stream.on('data', (chunk: Buffer) => (text += chunk.toString()));
    return { stream, text: () => text };
  }

  it('pretty: one line with time, level, message and the fields as key=value; an error as its message', () => {
    const out = capture(false);
    const log = makeLogger({ logLevel: 'info', logFormat: 'pretty' }, out.stream).child({ worker: 1 });
    log.info({ task: 12, state: 'CS', exitCode: 0, signal: null }, 'task ended');
    log.warn({ err: new Error('connection "lost"') }, 'claim failed; retrying');
    const lines = out.text().trimEnd().split('\n');
    assert.equal(lines.length, 2, out.text());
    assert.match(lines[0]!, /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: task ended {2}worker=1 task=12 state=CS exitCode=0$/);
    assert.match(lines[1]!, /^\[[\d:.]+\] WARN: claim failed; retrying {2}worker=1 err="connection \\"lost\\""$/);
  });

  it("pretty: the README's example line is what it prints", () => {
    const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    const example = /`(\[\d\d:\d\d:\d\d\.\d{3}\] INFO: task ended[^`]*)`/.exec(readme)?.[1]?.replace(/\n/g, ' ');
    assert.ok(example, 'the README has a pretty log example');
    const out = capture(false);
    makeLogger({ logLevel: 'info', logFormat: 'pretty' }, out.stream).child({ worker: 1, group: 0 })
      .info({ task: 12, attempt: 1, state: 'CS', endReason: 'completed', exitCode: 0, signal: null }, 'task ended');
    assert.equal(out.text().trimEnd().replace(/^\[[\d:.]+\]/, '[13:35:06.046]'), example);
  });

  it('auto: JSON lines when the output is not a terminal, readable lines when it is; json forces JSON', () => {
    const pipe = capture(false);
    makeLogger({ logLevel: 'info', logFormat: 'auto' }, pipe.stream).info({ task: 1 }, 'hello');
    assert.deepEqual(pick(JSON.parse(pipe.text()) as Record<string, unknown>), { msg: 'hello', task: 1 });
    const terminal = capture(true);
    makeLogger({ logLevel: 'info', logFormat: 'auto' }, terminal.stream).info({ task: 1 }, 'hello');
    assert.match(terminal.text(), /INFO.*hello.*task=.*1/);
    const forced = capture(true);
    makeLogger({ logLevel: 'info', logFormat: 'json' }, forced.stream).info({ task: 1 }, 'hello');
    assert.deepEqual(pick(JSON.parse(forced.text()) as Record<string, unknown>), { msg: 'hello', task: 1 });
  });

  function pick(line: Record<string, unknown>): Record<string, unknown> {
    return { msg: line.msg, task: line.task };
  }
});

describe("a term's parts", () => {
  it('stop at once: a part whose cycle is in flight holds up no other, and a new term restarts them all', async () => {
    // Retention's pass in flight when the term ends: its stop() resolves only once the pass is done.
    let finishPass!: () => void;
    const passDone = new Promise<void>((resolve) => (finishPass = resolve));
    const running = new Map<string, boolean>();
    const part = (name: string, stop: () => Promise<void> = () => Promise.resolve()): NamedService => ({
      name,
      service: {
        start: () => void running.set(name, true),
        stop: () => {
          running.set(name, false);
          return stop();
        },
      },
    });
    const parts = [part('scheduler'), part('delayed'), part('retention', () => passDone), part('recovery watch')];
    await startAll(parts);
    const stopped = stopAllAtOnce(parts);
    assert.deepEqual([...running.values()], [false, false, false, false], 'every part is stopped in the turn the term ended');
    // The next term begins while the old pass is still in flight, then the pass ends.
    await startAll(parts);
    finishPass();
    await stopped;
    assert.deepEqual([...running.values()], [true, true, true, true], "the old term's stop stopped nothing of the new term");
  });
});
