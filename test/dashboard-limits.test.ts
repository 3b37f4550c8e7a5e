// The dashboard's bounds against one client, over real HTTP to a real server on 127.0.0.1
// (issue 25): the token login redirects only to a local path, wrong tokens are throttled per
// address (429 + Retry-After), and live streams are capped per address and in all (503).
// Other client addresses are 127.0.0.2 and 127.0.0.3: Linux routes all of 127/8 to lo.
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { DashboardConfigError, startDashboard, type DashboardServer } from '../src/http/dashboard/index.js';
import { clientKey, FailureBudget, StreamSlots } from '../src/http/dashboard/limits.js';
import { runCli } from './helpers/cli.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { testLogger } from './helpers/node.js';
import { until } from './helpers/wait.js';

const TOKEN = 'a-token-of-the-limits-test-0123456789';

let db: TestDatabase;
const servers: DashboardServer[] = [];

before(async () => {
  db = await createTestDatabase('dashboard_limits');
});

after(async () => {
  for (const server of servers) await server.close();
  await db.close();
});

async function serve(options: { token?: string; maxStreams?: number; maxStreamsPerAddress?: number } = {}): Promise<DashboardServer> {
  const server = await startDashboard({ connectionString: db.url, schema: 'long_task', host: '127.0.0.1', port: 0, logger: testLogger, token: null, ...options });
  servers.push(server);
  return server;
}

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/**
 * One request with the path sent as written (fetch would resolve "/x/..//evil.com/" before
 * sending it), from `from`, on a connection of its own.
 */
function get(port: number, path: string, options: { from?: string; headers?: http.OutgoingHttpHeaders } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const request = http.get({ host: '127.0.0.1', port, path, localAddress: options.from ?? '127.0.0.1', headers: options.headers, agent: false }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body }));
    });
    request.on('error', reject);
  });
}

interface Stream {
  status: number;
  body: string;
  close(): void;
}

/** GET /events from `from`: an open stream (200, once its hello arrived), or the refusal. */
function openStream(port: number, from: string): Promise<Stream> {
  return new Promise((resolve, reject) => {
    const request = http.get({ host: '127.0.0.1', port, path: '/events', localAddress: from, agent: false }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      const close = (): void => void request.destroy();
      if (response.statusCode !== 200) {
        response.on('data', (chunk: string) => (body += chunk));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, body, close }));
        return;
      }
      response.on('data', (chunk: string) => {
        body += chunk;
        if (body.includes('event: hello')) resolve({ status: 200, body, close });
      });
    });
    request.on('error', reject);
  });
}

describe('dashboard limits', () => {
  it('redirects a token login only to a path of this site', async () => {
    const server = await serve({ token: TOKEN });
    const login = async (path: string): Promise<string | undefined> => {
      const answer = await get(server.port, `${path}${path.includes('?') ? '&' : '?'}token=${TOKEN}`);
      assert.equal(answer.status, 303, path);
      return answer.headers.location;
    };
    // Each of these resolves to //evil.com/ (a browser would go to evil.com): the start page instead.
    assert.equal(await login('/x/..//evil.com/'), '/');
    assert.equal(await login('/x/../\\evil.com/'), '/');
    assert.equal(await login('/\\evil.com/'), '/');
    assert.equal(await login('//evil.com/'), '/');
    assert.equal(await login('/x/..//evil.com/?state=AW'), '/');
    // Encoded slashes stay encoded: a path of this site.
    assert.equal(await login('/%2F%2Fevil.com/'), '/%2F%2Fevil.com/');
    // An ordinary login still returns to its page, with its query and without the token.
    assert.equal(await login('/tasks?state=AW'), '/tasks?state=AW');
    assert.equal(await login('/tasks/../workers'), '/workers');
  });

  it('throttles wrong tokens per address with 429 and Retry-After; a session cookie still works', async () => {
    const server = await serve({ token: TOKEN });
    const entry = await get(server.port, `/tasks?token=${TOKEN}`);
    assert.equal(entry.status, 303);
    const cookie = String(entry.headers['set-cookie']).split(';')[0]!;

    for (let i = 0; i < 10; i++) assert.equal((await get(server.port, `/tasks?token=wrong-token-${i}-0123456789`)).status, 401, `try ${i + 1}`);
    const refused = await get(server.port, '/tasks?token=wrong-token-again-0123456789');
    assert.equal(refused.status, 429);
    assert.match(refused.body, /^too many wrong tokens from 127\.0\.0\.1: try again in \d+ s\n$/);
    const retryAfter = Number(refused.headers['retry-after']);
    assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 6, `Retry-After ${refused.headers['retry-after']}`);
    // Past the budget no token is read, the right one included (else the answer would tell
    // the right one from the wrong ones), by query or by Bearer.
    assert.equal((await get(server.port, `/tasks?token=${TOKEN}`)).status, 429);
    assert.equal((await get(server.port, '/tasks', { headers: { authorization: `Bearer ${TOKEN}` } })).status, 429);
    assert.equal((await get(server.port, '/tasks', { headers: { authorization: 'Bearer wrong-token-0123456789' } })).status, 429);
    // A browser that already holds a session is not locked out by its neighbour.
    assert.equal((await get(server.port, '/tasks', { headers: { cookie } })).status, 200);
    // Another address has its own budget.
    assert.equal((await get(server.port, `/tasks?token=${TOKEN}`, { from: '127.0.0.2' })).status, 303);
    assert.equal((await get(server.port, '/tasks', { from: '127.0.0.2', headers: { authorization: `Bearer ${TOKEN}` } })).status, 200);
    assert.equal((await get(server.port, '/tasks?token=wrong-token-0123456789', { from: '127.0.0.2' })).status, 401);
  });

  it('caps live streams per address at 16 by default (503, one line)', async () => {
    const server = await serve();
    const streams: Stream[] = [];
    try {
      for (let i = 0; i < 16; i++) {
        const stream = await openStream(server.port, '127.0.0.1');
        streams.push(stream);
        assert.equal(stream.status, 200, `stream ${i + 1}`);
      }
      const refused = await openStream(server.port, '127.0.0.1');
      assert.equal(refused.status, 503);
      assert.equal(refused.body, 'too many live streams from 127.0.0.1: 16 are open, the most one address may have (close some dashboard tabs)\n');
      // Another address is not held back by this one.
      const other = await openStream(server.port, '127.0.0.2');
      streams.push(other);
      assert.equal(other.status, 200);
      // A closed stream gives its place back (once the server has seen it close).
      streams.shift()!.close();
      const again = await until(async () => {
        const stream = await openStream(server.port, '127.0.0.1');
        if (stream.status === 200) return stream;
        assert.equal(stream.status, 503);
        return null;
      }, 'a place freed by a closed stream');
      streams.push(again);
    } finally {
      for (const stream of streams) stream.close();
    }
  });

  it('caps live streams in all (configurable), and refuses a cap that is not a count', async () => {
    const server = await serve({ maxStreams: 4, maxStreamsPerAddress: 2 });
    const streams: Stream[] = [];
    try {
      for (const from of ['127.0.0.1', '127.0.0.1', '127.0.0.2', '127.0.0.2']) {
        const stream = await openStream(server.port, from);
        streams.push(stream);
        assert.equal(stream.status, 200);
      }
      const perAddress = await openStream(server.port, '127.0.0.2');
      assert.equal(perAddress.status, 503);
      assert.match(perAddress.body, /^too many live streams from 127\.0\.0\.2: 2 are open/);
      const total = await openStream(server.port, '127.0.0.3');
      assert.equal(total.status, 503);
      assert.equal(total.body, 'too many live streams: 4 are open, the most this dashboard serves (try again later)\n');
      // The pages themselves are not capped.
      assert.equal((await get(server.port, '/tasks', { from: '127.0.0.3' })).status, 200);
    } finally {
      for (const stream of streams) stream.close();
    }
    await assert.rejects(serve({ maxStreams: 0 }), (error: Error) => error instanceof DashboardConfigError && error.message === 'the most live streams must be a whole number of at least 1, got 0');
    const cli = await runCli(db.url, ['dashboard', '--port', '0', '--max-streams-per-address', '0']);
    assert.equal(cli.code, 1);
    assert.match(cli.stderr, /--max-streams-per-address must be at least 1, got "0"/);
  });
});

describe('dashboard limit parts', () => {
  it('refills a failure budget over time and forgets the oldest addresses past its size', () => {
    let now = 0;
    const budget = new FailureBudget({ burst: 3, perMinute: 6, maxAddresses: 100, now: () => now });
    for (let i = 0; i < 3; i++) {
      assert.equal(budget.waitFor('a'), 0);
      budget.fail('a');
    }
    assert.equal(budget.waitFor('a'), 10);
    now += 4_000;
    assert.equal(budget.waitFor('a'), 6);
    now += 6_000;
    assert.equal(budget.waitFor('a'), 0);
    budget.fail('a');
    assert.equal(budget.waitFor('a'), 10);
    // A full bucket again is forgotten.
    now += 60_000;
    assert.equal(budget.waitFor('a'), 0);
    assert.equal(budget.size, 0);
    // A million addresses, one failure each: the table keeps the last 100.
    for (let i = 0; i < 1_000_000; i++) budget.fail(`10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`);
    assert.equal(budget.size, 100);
  });

  it('counts IPv4 by address and IPv6 by /64', () => {
    assert.equal(clientKey('192.0.2.7'), '192.0.2.7');
    assert.equal(clientKey('::ffff:192.0.2.7'), '192.0.2.7');
    assert.equal(clientKey('2001:db8:1:2:aaaa::1'), '2001:db8:1:2::/64');
    assert.equal(clientKey('2001:db8:1:2:ffff:ffff:ffff:fffe'), '2001:db8:1:2::/64');
    assert.equal(clientKey('2001:0db8::1'), '2001:db8:0:0::/64');
    assert.equal(clientKey('::1'), '0:0:0:0::/64');
    assert.equal(clientKey('fe80::1%eth0'), 'fe80:0:0:0::/64');
  });

  it('frees a stream slot once, however often it is released', () => {
    const slots = new StreamSlots({ perAddress: 1, total: 10 });
    const first = slots.take('192.0.2.1');
    assert.ok('release' in first);
    assert.ok('refused' in slots.take('192.0.2.1'));
    first.release();
    first.release();
    assert.equal(slots.size, 0);
    assert.ok('release' in slots.take('192.0.2.1'));
    assert.equal(slots.size, 1);
  });
});
