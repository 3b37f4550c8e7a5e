// libpq's multi-host connection settings: a host list in the URL (and PGHOST/PGPORT lists),
// tried in order, and target_session_attrs checked on each host as libpq does. The standby is
// a real one: a primary and a pg_basebackup -R replica started by this file.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { clientConfig, createClient, poolConfig } from '../src/db/connection.js';
import { migrate } from '../src/db/migrate.js';
import { freePort } from '../src/embedded/port.js';
import { runCli } from './helpers/cli.js';
import { on, Pair } from './helpers/pair.js';
import { addTask, startNode, stopAllNodes, useTestDatabase, waitEnded } from './helpers/node.js';

const db = useTestDatabase('multihost');

/** db.url with `hosts` (host:port, …) in place of its host. */
function withHosts(url: string, hosts: string, query = ''): string {
  const u = new URL(url);
  const user = u.username ? `${u.username}${u.password ? `:${u.password}` : ''}@` : '';
  return `${u.protocol}//${user}${hosts}${u.pathname}${query}`;
}

async function serverPort(config: pg.ClientConfig): Promise<number> {
  const client = createClient(config);
  await client.connect();
  try {
    const { rows } = await client.query<{ port: number }>('SELECT inet_server_port() AS port');
    return rows[0]!.port;
  } finally {
    await client.end();
  }
}

describe('bad settings: one line', () => {
  for (const [url, message] of [
    ['postgres://postgres@a,,b/x', 'pg-tasks: invalid host "" in the host list "a,,b" of the connection URL: write host, host:port or [ipv6]:port, separated by commas'],
    ['postgres://postgres@a:1,b:70000/x', 'pg-tasks: invalid port "70000" in the host list "a:1,b:70000" of the connection URL: 1 to 65535'],
    ['postgres://postgres@127.0.0.1/x?target_session_attrs=master', 'pg-tasks: invalid target_session_attrs "master" in the connection URL: use one of any, read-write, read-only, primary, standby, prefer-standby'],
  ] as const) {
    it(`migrate refuses ${url}`, async () => {
      const result = await runCli(url, ['migrate']);
      assert.equal(result.code, 1, result.stdout);
      assert.equal(result.stderr, `${message}\n`);
    });
  }

  it('PGPORT with a port count that matches no host count', async () => {
    const result = await runCli('', ['migrate'], { DATABASE_URL: undefined, PGHOST: '127.0.0.1,127.0.0.1,127.0.0.1', PGPORT: '1,2' });
    assert.equal(result.code, 1, result.stdout);
    assert.equal(result.stderr, 'pg-tasks: PGPORT has 2 ports for the 3 hosts of PGHOST: give one port, or one for each host\n');
  });

  it('no host that fits: one line naming each host', async () => {
    const closed = await freePort();
    const live = new URL(db.url).host;
    const url = withHosts(db.url, `127.0.0.1:${closed},${live}`, '?target_session_attrs=standby');
    const result = await runCli(url, ['migrate']);
    assert.equal(result.code, 1, result.stdout);
    assert.match(result.stderr, new RegExp(`^pg-tasks: no host fits target_session_attrs=standby \\(127\\.0\\.0\\.1:${closed}: .*ECONNREFUSED.*; ${live.replace(/\./g, '\\.')}: a primary, read-write\\)\\n$`));
  });

  it('one host with any stays a plain pg.Client, the URL untouched', () => {
    const config = clientConfig({ connectionString: db.url });
    assert.equal(config.connectionString, db.url);
    assert.equal(config.selection, undefined);
    assert.equal(createClient(config).constructor, pg.Client);
    assert.equal(poolConfig({ connectionString: db.url }).Client, undefined);
  });
});

describe('a dead first host', () => {
  it('migrate connects to the second', async () => {
    const closed = await freePort();
    const url = withHosts(db.url, `127.0.0.1:${closed},${new URL(db.url).host}`);
    const result = await runCli(url, ['migrate']);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /schema "long_task" is (up to date|at version)/);
  });

  it('a bracketed IPv6 first host', async () => {
    const closed = await freePort();
    const live = new URL(db.url);
    const config = clientConfig({ connectionString: withHosts(db.url, `[::1]:${closed},${live.host}`) });
    assert.deepEqual(config.selection?.targets, [{ host: '::1', port: closed }, { host: live.hostname, port: Number(live.port) || undefined }]);
    assert.equal(await serverPort(config), Number(live.port || 5432));
  });

  it('PGHOST/PGPORT lists: migrate connects to the second', async () => {
    const closed = await freePort();
    const u = new URL(db.url);
    const result = await runCli('', ['migrate'], {
      DATABASE_URL: undefined, PGHOST: `127.0.0.1,${u.hostname}`, PGPORT: `${closed},${u.port || 5432}`,
      PGUSER: decodeURIComponent(u.username) || 'postgres', PGDATABASE: db.name, ...(u.password ? { PGPASSWORD: decodeURIComponent(u.password) } : {}),
    });
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /schema "long_task" is (up to date|at version)/);
  });

  it('a node runs a task', async () => {
    const closed = await freePort();
    await startNode(db, { connectionString: withHosts(db.url, `127.0.0.1:${closed},${new URL(db.url).host}`) });
    try {
      const id = await addTask(db, ['true']);
      await waitEnded(db, [id]);
      const { rows } = await db.query<{ state_id: string }>('SELECT state_id FROM long_task.task WHERE id = $1', [id]);
      assert.equal(rows[0]!.state_id, 'CS');
    } finally {
      await stopAllNodes();
    }
  });
});

describe('target_session_attrs against a primary and a real standby', () => {
  const pair = new Pair();
  before(async () => {
    await pair.start();
    const client = new pg.Client({ connectionString: pair.url(`127.0.0.1:${pair.primaryPort}`) });
    await client.connect();
    await migrate(client, 'long_task');
    await client.end();
  });
  after(async () => {
    await stopAllNodes();
    await pair.stop();
  });

  it('each setting picks the host libpq picks', async () => {
    const standbyFirst = `127.0.0.1:${pair.standbyPort},127.0.0.1:${pair.primaryPort}`;
    const expect: Array<[string, string, number]> = [
      [standbyFirst, 'read-write', pair.primaryPort],
      [standbyFirst, 'primary', pair.primaryPort],
      [standbyFirst, 'any', pair.standbyPort],
      [pair.both, 'standby', pair.standbyPort],
      [pair.both, 'read-only', pair.standbyPort],
      [pair.both, 'prefer-standby', pair.standbyPort],
      [`127.0.0.1:${pair.primaryPort}`, 'prefer-standby', pair.primaryPort],
    ];
    for (const [hosts, attrs, port] of expect) {
      assert.equal(await serverPort(clientConfig({ connectionString: pair.url(hosts, `?target_session_attrs=${attrs}`) })), port, `${hosts} ${attrs}`);
    }
  });

  it('migrate with read-write skips the standby listed first', async () => {
    const result = await runCli(pair.url(`127.0.0.1:${pair.standbyPort},127.0.0.1:${pair.primaryPort}`, '?target_session_attrs=read-write'), ['migrate']);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /up to date/);
  });

  it('a node with both hosts follows a promotion', async () => {
    const primary = on(pair.url(`127.0.0.1:${pair.primaryPort}`));
    const promoted = on(pair.url(`127.0.0.1:${pair.standbyPort}`));
    try {
      const url = pair.url(pair.both, '?target_session_attrs=read-write');
      await startNode(primary, { connectionString: url });
      const first = await addTask(primary, ['true']);
      await waitEnded(primary, [first]);
      await primary.close().catch(() => undefined);
      await pair.stopPrimary();
      await pair.promote();
      const second = await addTask(promoted, ['true']);
      await waitEnded(promoted, [second], 60_000);
      const { rows } = await promoted.query<{ state_id: string }>('SELECT state_id FROM long_task.task WHERE id = $1', [second]);
      assert.equal(rows[0]!.state_id, 'CS');
    } finally {
      await stopAllNodes();
      await promoted.close();
    }
  });
});
