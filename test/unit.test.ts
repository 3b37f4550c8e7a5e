// Pure logic, no database.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseNamedQueries, loadQueries } from '../src/db/queries.js';
import { loadMigrations } from '../src/db/migrate.js';
import { OutputTail } from '../src/node/output-tail.js';
import { taskArgv, taskCwd } from '../src/node/task-process.js';
import { parseDuration, parseTaskId, parseState } from '../src/cli/parse.js';

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
  it('loads every runtime query with the schema quoted', () => {
    const q = loadQueries('my"schema');
    assert.match(q.claimTasks, /"my""schema"\.task/);
    assert.doesNotMatch(q.claimTasks, /\{\{schema\}\}/);
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
    assert.equal(parseDuration('3'), 3_000);
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
