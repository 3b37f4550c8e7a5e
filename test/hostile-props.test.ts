// Property tests (fast-check) over what hostile input meets first: the CLI's parsers and the
// spawn request a node sends for a task. Any string a user can type must come out as a value
// that satisfies the parser's promise, or as an InvalidArgumentError of one readable line;
// any argv and cwd a row can hold must reach the process byte for byte, through the spawn
// helper and through child_process alike. No database.
//
// Seeded, so that a run is repeatable: PGTASKS_FC_SEED=N explores other inputs, and a failure
// prints the seed and the shrunk counterexample that replays it.
import assert from 'node:assert/strict';
import { mkdirSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it, type TestContext } from 'node:test';
import { Command, CommanderError, InvalidArgumentError, type Option } from 'commander';
import fc from 'fast-check';
import pino from 'pino';
import { buildProgram } from '../src/cli/main.js';
import { oneLine } from '../src/cli/io.js';
import {
  parseDuration, parseEvery, parseInteger, parseJson, parseNonNegative, parsePort, parsePositive, parseState, parseTaskId, parseTaskIds,
  parseTime, parseTimerDuration, shown,
} from '../src/cli/parse.js';
import { addRunOptions } from '../src/cli/run-options.js';
import { TASK_STATES } from '../src/client/types.js';
import { Spawner } from '../src/node/process/spawner.js';
import { TaskProcess, type ProcessResult } from '../src/node/process/task-process.js';
import { MAX_TIMER_MS } from '../src/lib/timed-loop.js';
import { tempDir } from './helpers/node.js';

const seed = Number(process.env.PGTASKS_FC_SEED ?? 13_2026);
const PURE = { seed, numRuns: 300 };
const PROCESSES = { seed, numRuns: 60 };

/** Strings as a user might type them: any code point, control characters, digits and signs, long ones. */
const anyText = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ unit: fc.constantFrom(...'0123456789-+. \t\n,:_%eExXmsdhw'.split('')), maxLength: 30 }),
  fc.string({ unit: 'binary-ascii', minLength: 100, maxLength: 5_000 }),
  fc.constantFrom('', ' ', '-0', '+1', '0x10', '1e3', '1_000', 'NaN', 'Infinity', '-2147483649', '2147483648', '99999999999999999999', '٣', '１'),
);

/** The promise of a parser's error: an InvalidArgumentError whose message is one bounded line. */
function assertOneLineError(error: unknown): void {
  assert.ok(error instanceof InvalidArgumentError, `expected an InvalidArgumentError, got ${String(error)}`);
  // eslint-disable-next-line no-control-regex -- the property: no control character in the message
  assert.doesNotMatch(error.message, /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/, 'one line, no control characters');
  assert.ok(error.message.length <= 400, `a bounded message, not ${error.message.length} characters`);
}

/** parse(value) returns a value that satisfies `check`, or throws a one-line InvalidArgumentError. */
function valueOrOneLineError<T>(parse: (value: string) => T, check: (result: T, value: string) => void): fc.IPropertyWithHooks<[string]> {
  return fc.property(anyText, (value) => {
    let result: T;
    try {
      result = parse(value);
    } catch (error) {
      assertOneLineError(error);
      return;
    }
    check(result, value);
  });
}

const INT_MIN = -(2 ** 31);
const INT_MAX = 2 ** 31 - 1;

describe('the CLI parsers: any string is a value or one line of error', () => {
  it('parseInteger: an int (PostgreSQL int) equal to the digits given, and every int round-trips', () => {
    fc.assert(valueOrOneLineError((v) => parseInteger(v, '--group'), (n, v) => {
      assert.ok(Number.isInteger(n) && n >= INT_MIN && n <= INT_MAX, `${n} is an int`);
      assert.equal(n, Number(v.trim()));
    }), PURE);
    fc.assert(fc.property(fc.integer({ min: INT_MIN, max: INT_MAX }), (n) => assert.equal(parseInteger(String(n)), n)), PURE);
    fc.assert(fc.property(fc.oneof(fc.integer({ min: INT_MAX + 1, max: Number.MAX_SAFE_INTEGER }), fc.integer({ min: Number.MIN_SAFE_INTEGER, max: INT_MIN - 1 })), (n) => {
      assert.throws(() => parseInteger(String(n), '--priority'), /--priority is out of range/);
    }), PURE);
  });

  it('parseNonNegative, parsePositive, parsePort: within their ranges', () => {
    fc.assert(valueOrOneLineError((v) => parseNonNegative(v, '--output-limit'), (n) => assert.ok(n >= 0 && n <= INT_MAX)), PURE);
    fc.assert(valueOrOneLineError((v) => parsePositive(v, '--limit'), (n) => assert.ok(n >= 1 && n <= INT_MAX)), PURE);
    fc.assert(valueOrOneLineError((v) => parsePort(v, '--port'), (n) => assert.ok(Number.isInteger(n) && n >= 0 && n <= 65_535)), PURE);
  });

  it('parseTaskId and parseTaskIds: positive safe integers, each once', () => {
    fc.assert(valueOrOneLineError(parseTaskId, (n, v) => {
      assert.ok(Number.isSafeInteger(n) && n >= 1);
      assert.equal(String(n), v.replace(/^0+/, ''));
    }), PURE);
    fc.assert(valueOrOneLineError(parseTaskIds, (ids) => {
      assert.ok(ids.length >= 1 && ids.every((n) => Number.isSafeInteger(n) && n >= 1));
      assert.equal(new Set(ids).size, ids.length);
    }), PURE);
    fc.assert(fc.property(fc.array(fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }), { minLength: 1, maxLength: 20 }), (ids) => {
      assert.deepEqual(parseTaskIds(ids.join(',')), [...new Set(ids)]);
    }), PURE);
  });

  it('parseDuration: a safe number of milliseconds (never Infinity, never rounded past 2^53); a timer duration fits a timer', () => {
    fc.assert(valueOrOneLineError(parseDuration, (ms) => assert.ok(Number.isSafeInteger(ms) && ms >= 0, `${ms}`)), PURE);
    fc.assert(valueOrOneLineError((v) => parseTimerDuration(v, '--lease'), (ms) => assert.ok(ms >= 0 && ms <= MAX_TIMER_MS)), PURE);
    const units = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };
    fc.assert(fc.property(fc.nat({ max: 10 ** 6 }), fc.constantFrom(...(Object.keys(units) as Array<keyof typeof units>)), (n, unit) => {
      assert.equal(parseDuration(`${n}${unit}`), n * units[unit]);
    }), PURE);
  });

  it('parseState: one of the states, whatever the case; anything else is refused', () => {
    fc.assert(valueOrOneLineError(parseState, (state, v) => {
      assert.ok(state in TASK_STATES);
      assert.equal(state, v.toUpperCase());
    }), PURE);
  });

  it('parseJson: any JSON round-trips, except \\u0000, which jsonb cannot hold and is refused by name', () => {
    fc.assert(valueOrOneLineError(parseJson, (value, v) => assert.deepEqual(value, JSON.parse(v))), PURE);
    fc.assert(fc.property(fc.jsonValue(), (value) => {
      const text = JSON.stringify(value);
      if (text.includes('\\u0000')) {
        assert.throws(() => parseJson(text), /\\u0000 \(a NUL character\), which PostgreSQL cannot store in jsonb/);
      } else {
        assert.deepEqual(parseJson(text), JSON.parse(text));
      }
    }), PURE);
  });

  it('parseEvery and parseTime: a period of 1 to 2^31 − 1 units, a valid time', () => {
    fc.assert(valueOrOneLineError(parseEvery, ({ periodId, count }) => {
      assert.ok(['SEC', 'MIN', 'HOU', 'DAY', 'WEE', 'MON'].includes(periodId));
      assert.ok(Number.isInteger(count) && count >= 1 && count <= INT_MAX);
    }), PURE);
    fc.assert(valueOrOneLineError(parseTime, (date) => assert.ok(!Number.isNaN(date.getTime()))), PURE);
  });

  it('shown and oneLine: any value is quoted on one bounded line', () => {
    fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 3_000 }), (value) => {
      for (const text of [shown(value), oneLine(`error: ${value}\n`)]) {
        // eslint-disable-next-line no-control-regex -- the property: no control character
        assert.doesNotMatch(text, /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/);
        assert.ok(text.length <= 1_000, `${text.length} characters`);
      }
      // Short values are quoted whole, as JSON would (so they can be read back).
      if (value.length <= 60) assert.equal(JSON.parse(shown(value).replace(/\\u(00[89][0-9a-f]|007f|202[89])/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)))), value);
    }), PURE);
  });
});

/** A sink for what commander writes. */
function capture(): { stream: Writable; text: () => string } {
  let text = '';
  const stream = new Writable({ write(chunk: Buffer, _encoding, done) { text += chunk.toString(); done(); } });
  return { stream, text: () => text };
}

/** Every option of every command that takes a value, e.g. ['add', '--priority']. */
function valueOptions(program: Command): Array<[Command, Option]> {
  return program.commands.flatMap((command) => command.options.filter((o) => o.required || o.optional).map((o) => [command, o] as [Command, Option]));
}

describe('the whole command line: any value of any option', () => {
  it('is taken, or refused with one line on stderr and a nonzero code; never a throw of another kind', async () => {
    const probe = buildProgram({ stdout: capture().stream, stderr: capture().stream });
    const options = valueOptions(probe);
    assert.ok(options.length > 40, `found ${options.length} options`);
    await fc.assert(fc.asyncProperty(fc.constantFrom(...options.map(([c, o]) => [c.name(), o.long!] as const)), anyText, async ([name, flag], value) => {
      const out = capture();
      const err = capture();
      const program = buildProgram({ stdout: out.stream, stderr: err.stream });
      // Only the parsing is under test: the actions (which would connect) record what they got.
      let taken: Record<string, unknown> | null = null;
      for (const command of program.commands) command.action((...args: unknown[]) => { taken = (args.at(-2) as Record<string, unknown>) ?? {}; });
      const positional = name === 'add' ? ['--', 'echo'] : ['queue', 'cancel', 'runs', 'show', 'logs', 'schedule', 'unschedule'].includes(name) ? ['1'] : name === 'stop' ? ['1'] : [];
      const argv = [name, `${flag}=${value}`, ...(name === 'prune' && flag !== '--older-than' ? ['--older-than', '1d'] : []), ...positional];
      try {
        await program.parseAsync(argv, { from: 'user' });
      } catch (error) {
        assert.ok(error instanceof CommanderError, `${flag}: ${String(error)}`);
        assert.ok(error.exitCode !== 0);
        const lines = err.text().split('\n');
        assert.equal(lines.at(-1), '', 'ends with a newline');
        assert.equal(lines.length, 2, `one line of error, got ${JSON.stringify(err.text().slice(0, 300))}`);
        assert.match(lines[0]!, /^pg-tasks: /);
        // eslint-disable-next-line no-control-regex -- the property: no control character
        assert.doesNotMatch(lines[0]!, /[\u0000-\u001f\u007f-\u009f]/);
        assert.ok(lines[0]!.length <= 1_000);
        return;
      }
      assert.ok(taken, `${flag}=${JSON.stringify(value.slice(0, 50))}: neither refused nor taken`);
    }), { seed, numRuns: 400 });
  });

  it('the run options (--timeout, --max-attempts, --backoff, --retry-on) give settings the database can hold', async () => {
    await fc.assert(fc.asyncProperty(fc.constantFrom('--timeout', '--max-attempts', '--backoff', '--retry-on'), anyText, async (flag, value) => {
      const command = addRunOptions(new Command('x')).exitOverride().configureOutput({ writeErr: () => undefined });
      let opts: Record<string, unknown> | null = null;
      command.action((o: Record<string, unknown>) => { opts = o; });
      try {
        await command.parseAsync([`${flag}=${value}`], { from: 'user' });
      } catch (error) {
        assert.ok(error instanceof CommanderError);
        return;
      }
      const o = opts! as { timeout?: number; maxAttempts?: number; backoff?: { base: number; cap: number | null }; retryOn?: string[] };
      if (o.timeout !== undefined) assert.ok(Number.isSafeInteger(o.timeout) && o.timeout > 0);
      if (o.maxAttempts !== undefined) assert.ok(o.maxAttempts >= 1 && o.maxAttempts <= INT_MAX);
      if (o.backoff) assert.ok(o.backoff.base > 0 && Number.isSafeInteger(o.backoff.base) && (o.backoff.cap === null || (Number.isSafeInteger(o.backoff.cap) && o.backoff.cap >= o.backoff.base)));
      if (o.retryOn) assert.ok(o.retryOn.length > 0);
    }), PURE);
  });
});

// ---------------------------------------------------------------------------------------------
// The spawn request: argv and cwd, as a row can hold them, reach the process byte for byte.

/** A text[] element: any code point but NUL (PostgreSQL text cannot hold one), never exactly %TASK. */
const argText = fc.oneof(
  { weight: 6, arbitrary: fc.string({ unit: 'binary', maxLength: 30 }) },
  { weight: 3, arbitrary: fc.string({ unit: fc.constantFrom(...' \t\n\r\'"$`\\;|&*?~-=(){}[]<>!#%^.'.split('')), maxLength: 20 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary-ascii', minLength: 1_000, maxLength: 20_000 }) },
).map((s) => s.replace(/\0/g, '')).filter((s) => s !== '%TASK');

/** printf writes each argument, NUL-terminated: the exact bytes the process received. */
const PRINT_ARGV = ['/usr/bin/printf', '%s\\0'];

function expectedBytes(args: string[]): Buffer {
  return Buffer.concat(args.map((a) => Buffer.from(`${a}\0`, 'utf8')));
}

/** Runs a task through TaskProcess; the output as raw bytes (the sink sees every chunk). */
async function runTask(spawner: Spawner | null, command: string[], cwd: string | null, rootDir: string): Promise<{ result: ProcessResult; bytes: Buffer }> {
  const chunks: Buffer[] = [];
  const proc = new TaskProcess({ id: 7, command, cwd, params: null }, { rootDir, outputLimit: 0, sink: (c) => chunks.push(c) }, spawner);
  const result = await proc.done;
  return { result, bytes: Buffer.concat(chunks) };
}

const log = pino({ level: 'silent' });
let helper: Spawner | null = null;
let helperMissing = '';
let root: string;
// The helper's pipes are unref'd (a node's database connections keep it alive): here a timer does.
let keepAlive: NodeJS.Timeout | undefined;
before(async () => {
  keepAlive = setInterval(() => undefined, 60_000);
  root = realpathSync(tempDir('hostile-props'));
  try {
    helper = await Spawner.create('helper', log);
  } catch (error) {
    helperMissing = (error as Error).message;
  }
});
after(() => {
  helper?.stop();
  clearInterval(keepAlive);
});

const spawners: Array<[string, () => Spawner | null]> = [['the spawn helper', () => helper], ['child_process', () => null]];

for (const [label, spawner] of spawners) {
  describe(`the spawn request, through ${label}`, () => {
    const skipped = (t: TestContext): boolean => {
      if (label === 'the spawn helper' && !helper) {
        t.skip(`no spawn helper here (${helperMissing})`);
        return true;
      }
      return false;
    };

    it('any argv (quotes, $, backticks, ;, |, newlines, leading -, empty, unicode, 20 kB) arrives byte for byte, uninterpreted', async (t) => {
      if (skipped(t)) return;
      // At least one: with none, printf still runs its format once.
      await fc.assert(fc.asyncProperty(fc.array(argText, { minLength: 1, maxLength: 12 }), async (args) => {
        const { result, bytes } = await runTask(spawner(), [...PRINT_ARGV, ...args], null, root);
        assert.equal(result.spawnError, null);
        assert.equal(result.exitCode, 0);
        assert.ok(bytes.equals(expectedBytes(args)), `sent ${JSON.stringify(args).slice(0, 200)}, received ${JSON.stringify(bytes.toString()).slice(0, 200)}`);
      }), PROCESSES);
    });

    it('any cwd (a directory named with any of those characters) is where the process runs', async (t) => {
      if (skipped(t)) return;
      // A name is one path component: no '/', and at most 255 bytes.
      const dirName = fc.string({ unit: 'binary', minLength: 1, maxLength: 60 })
        .map((s) => s.replace(/[\0/]/g, '_'))
        .filter((s) => s !== '.' && s !== '..' && Buffer.byteLength(s) <= 255);
      await fc.assert(fc.asyncProperty(dirName, fc.boolean(), async (name, relative) => {
        const dir = path.join(root, 'cwd', name);
        mkdirSync(dir, { recursive: true });
        // Relative: resolved against the node's root dir, as a row's relative cwd is.
        const { result, bytes } = await runTask(spawner(), ['/bin/pwd', '-P'], relative ? path.join('cwd', name) : dir, root);
        assert.equal(result.spawnError, null);
        assert.ok(bytes.equals(Buffer.from(`${dir}\n`, 'utf8')), `cwd ${JSON.stringify(dir)}, pwd said ${JSON.stringify(bytes.toString())}`);
      }), PROCESSES);
    });

    it('params of any JSON reach the process as PG_TASKS_PARAMS, whole', async (t) => {
      if (skipped(t)) return;
      await fc.assert(fc.asyncProperty(fc.jsonValue({ maxDepth: 3 }), async (params) => {
        const chunks: Buffer[] = [];
        const proc = new TaskProcess({ id: 7, command: ['/bin/sh', '-c', 'printf %s "$PG_TASKS_PARAMS"'], cwd: null, params }, { rootDir: root, outputLimit: 0, sink: (c) => chunks.push(c) }, spawner());
        const result = await proc.done;
        assert.equal(result.exitCode, 0);
        const received = Buffer.concat(chunks).toString('utf8');
        // null params: an empty variable (the process can tell "none" from JSON null).
        if (params === null) assert.equal(received, '');
        else assert.deepEqual(JSON.parse(received), JSON.parse(JSON.stringify(params)));
      }), { seed, numRuns: 30 });
    });

    it("the kernel's limits: a 128 KiB − 1 argument runs; one byte more, or a NUL byte, starts no process and says why", async (t) => {
      if (skipped(t)) return;
      // MAX_ARG_STRLEN is 32 pages, NUL included.
      const longest = 'x'.repeat(128 * 1024 - 1);
      const ok = await runTask(spawner(), [...PRINT_ARGV, longest], null, root);
      assert.equal(ok.result.exitCode, 0);
      assert.ok(ok.bytes.equals(expectedBytes([longest])));

      const tooLong = await startOrThrow(spawner(), ['/bin/echo', `${longest}x`]);
      assert.match(tooLong, /E2BIG/);
      const mb = await startOrThrow(spawner(), ['/bin/echo', 'x'.repeat(1024 * 1024)]);
      assert.match(mb, /E2BIG/);
      // NUL: a row cannot hold one, but the client API could be handed one.
      const nul = await startOrThrow(spawner(), ['/bin/echo', 'a\0b']);
      assert.match(nul, /null bytes|NUL byte/);
    });
  });
}

/** The spawn error of a task that must not start: thrown at once (as spawn() does), or reported. */
async function startOrThrow(spawner: Spawner | null, command: string[]): Promise<string> {
  let proc: TaskProcess;
  try {
    proc = new TaskProcess({ id: 7, command, cwd: null, params: null }, { rootDir: root, outputLimit: 1_000 }, spawner);
  } catch (error) {
    return (error as Error).message;
  }
  assert.equal(await proc.started, undefined, 'no process was started');
  const result = await proc.done;
  assert.equal(result.exitCode, null);
  return result.spawnError ?? '(no spawn error)';
}
