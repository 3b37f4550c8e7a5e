// The notification protocol: every kind notify_event builds in SQL parses into the typed union,
// and a payload this pg-tasks does not know is dropped and logged once per reason.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import pino from 'pino';
import { NotificationParser, parseNotification } from '../src/db/notifications.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';

let db: TestDatabase | undefined;
after(async () => {
  await db?.close();
});

describe('notifications', () => {
  it('parses each kind as notify_event builds it, without the keys left null', async () => {
    db = await createTestDatabase('notifications');
    const client = await db.pool.connect();
    const payloads: string[] = [];
    client.on('notification', (message) => payloads.push(message.payload ?? ''));
    try {
      await client.query('LISTEN probe');
      await client.query(`SELECT long_task.notify_event('probe', 'queued', p_group => 3),
                                 long_task.notify_event('probe', 'cancel', p_worker => NULL),
                                 long_task.notify_event('probe', 'ended', p_ids => ARRAY[5, 9007199254740991]::bigint[]),
                                 long_task.notify_event('probe', 'output'),
                                 long_task.notify_event('probe', 'ping', p_worker => 2, p_epoch => 7, p_seq => 4, p_lease => 1.5)`);
      await client.query('SELECT 1');
    } finally {
      client.release();
    }
    assert.deepEqual(payloads.map(parseNotification), [
      { e: 'queued', g: 3 },
      { e: 'cancel' },
      { e: 'ended', ids: [5, 9007199254740991] },
      { e: 'output' },
      { e: 'ping', w: 2, k: 7, n: 4, l: 1.5 },
    ]);
  });

  it('drops what it does not know, and says so once per reason', () => {
    const lines: string[] = [];
    const log = pino({ level: 'warn' }, { write: (line: string) => lines.push(line) });
    const parser = new NotificationParser(log);
    for (let i = 0; i < 3; i++) {
      assert.equal(parser.parse('{"e":"future","g":1}'), null);
      assert.equal(parser.parse('not json'), null);
      assert.equal(parser.parse('{"e":"queued"}'), null);
      assert.equal(parser.parse('{"e":"ended","ids":["x"]}'), null);
    }
    assert.equal(lines.length, 4, lines.join(''));
    assert.match(lines[0]!, /kind \\"future\\"/);
    assert.match(lines[2]!, /queued without a valid g/);
    assert.deepEqual(parser.parse('{"e":"worker","w":4}'), { e: 'worker', w: 4 });
  });

  it('keeps no memory per odd payload: the reasons it remembers are capped', () => {
    const lines: string[] = [];
    const parser = new NotificationParser(pino({ level: 'warn' }, { write: (line: string) => lines.push(line) }));
    for (let i = 0; i < 1000; i++) parser.parse(`{"e":"kind${i}"}`);
    assert.ok(lines.length < 100, `${lines.length} lines`);
  });
});
