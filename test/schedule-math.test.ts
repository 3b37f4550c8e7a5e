// Slot arithmetic with fixed instants: no database, no sleeping.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { dueSlots, nextCronSlot, nextPeriodSlot, nextSlot, parseCron, periodSlot } from '../src/lib/schedule-math.js';
import { parseEvery, parseTime } from '../src/cli/parse.js';

const iso = (d: Date | null): string | null => (d ? d.toISOString() : null);
const at = (s: string): Date => new Date(s);

describe('period slots', () => {
  it('SEC/MIN/HOU are fixed durations from the anchor', () => {
    const anchor = at('2027-01-01T00:00:00Z');
    assert.equal(iso(nextPeriodSlot(anchor, 'HOU', 2, 'UTC', at('2027-01-01T00:00:00Z'))), '2027-01-01T02:00:00.000Z');
    assert.equal(iso(nextPeriodSlot(anchor, 'HOU', 2, 'UTC', at('2027-01-01T03:59:59Z'))), '2027-01-01T04:00:00.000Z');
    assert.equal(iso(nextPeriodSlot(anchor, 'SEC', 10, 'UTC', at('2027-01-01T00:00:25Z'))), '2027-01-01T00:00:30.000Z');
    assert.equal(iso(nextPeriodSlot(anchor, 'MIN', 15, 'UTC', at('2027-01-01T00:15:00Z'))), '2027-01-01T00:30:00.000Z');
  });

  it('is strictly after the given instant, and the anchor itself when it is still ahead', () => {
    const anchor = at('2027-06-01T12:00:00Z');
    assert.equal(iso(nextPeriodSlot(anchor, 'DAY', 1, 'UTC', at('2027-06-01T11:00:00Z'))), '2027-06-01T12:00:00.000Z');
    assert.equal(iso(nextPeriodSlot(anchor, 'DAY', 1, 'UTC', at('2027-06-01T12:00:00Z'))), '2027-06-02T12:00:00.000Z');
  });

  it('catches up with one slot after a long downtime: the first slot in the future', () => {
    const anchor = at('2027-01-01T00:00:00Z');
    const now = at('2027-01-09T13:30:00Z'); // 8.5 days of missed hourly slots
    assert.equal(iso(nextPeriodSlot(anchor, 'HOU', 1, 'UTC', now)), '2027-01-09T14:00:00.000Z');
  });

  it('a month after Jan 31 is the end of February, and the month after that is Mar 31', () => {
    const anchor = at('2027-01-31T09:00:00Z');
    assert.equal(iso(periodSlot(anchor, 'MON', 1, 'UTC', 1)), '2027-02-28T09:00:00.000Z');
    assert.equal(iso(periodSlot(anchor, 'MON', 1, 'UTC', 2)), '2027-03-31T09:00:00.000Z');
    assert.equal(iso(periodSlot(anchor, 'MON', 1, 'UTC', 3)), '2027-04-30T09:00:00.000Z');
    assert.equal(iso(nextPeriodSlot(anchor, 'MON', 1, 'UTC', at('2027-02-28T09:00:00Z'))), '2027-03-31T09:00:00.000Z');
    // A leap year.
    assert.equal(iso(periodSlot(at('2028-01-31T09:00:00Z'), 'MON', 1, 'UTC', 1)), '2028-02-29T09:00:00.000Z');
    // Every 3 months, far ahead.
    assert.equal(iso(nextPeriodSlot(anchor, 'MON', 3, 'UTC', at('2029-12-01T00:00:00Z'))), '2030-01-31T09:00:00.000Z');
  });

  it('a DAY period keeps its wall-clock time across spring-forward and fall-back', () => {
    const zone = 'America/New_York';
    // 09:00 EST on Mar 13 2027 is 14:00Z; DST starts Mar 14 (EDT, UTC−4).
    const anchor = at('2027-03-13T14:00:00Z');
    assert.equal(iso(nextPeriodSlot(anchor, 'DAY', 1, zone, at('2027-03-13T14:00:00Z'))), '2027-03-14T13:00:00.000Z');
    // DST ends Nov 7 2027: 09:00 EDT (13:00Z) on Nov 6, 09:00 EST (14:00Z) on Nov 7.
    assert.equal(iso(nextPeriodSlot(anchor, 'DAY', 1, zone, at('2027-11-05T20:00:00Z'))), '2027-11-06T13:00:00.000Z');
    assert.equal(iso(nextPeriodSlot(anchor, 'DAY', 1, zone, at('2027-11-06T13:00:00Z'))), '2027-11-07T14:00:00.000Z');
    // In UTC the same schedule is a fixed 24 h.
    assert.equal(iso(nextPeriodSlot(anchor, 'DAY', 1, 'UTC', at('2027-03-13T14:00:00Z'))), '2027-03-14T14:00:00.000Z');
  });

  it('a local time a DST gap skips moves past the gap that day only', () => {
    const zone = 'America/New_York';
    // 02:30 EST on Mar 13 2027 (07:30Z); 02:30 does not exist on Mar 14.
    const anchor = at('2027-03-13T07:30:00Z');
    assert.equal(iso(periodSlot(anchor, 'DAY', 1, zone, 1)), '2027-03-14T07:30:00.000Z'); // 03:30 EDT
    assert.equal(iso(periodSlot(anchor, 'DAY', 1, zone, 2)), '2027-03-15T06:30:00.000Z'); // 02:30 EDT again
  });

  it('WEE is seven calendar days in the zone', () => {
    const anchor = at('2027-03-08T14:00:00Z'); // Monday 09:00 EST
    assert.equal(iso(periodSlot(anchor, 'WEE', 1, 'America/New_York', 1)), '2027-03-15T13:00:00.000Z'); // Monday 09:00 EDT
  });
});

describe('cron slots', () => {
  it('5 fields and 6 with seconds', () => {
    assert.equal(iso(nextCronSlot('0 * * * *', 'UTC', at('2027-01-01T10:00:00Z'))), '2027-01-01T11:00:00.000Z');
    assert.equal(iso(nextCronSlot('*/2 * * * * *', 'UTC', at('2027-01-01T10:00:00.500Z'))), '2027-01-01T10:00:02.000Z');
    assert.equal(iso(nextCronSlot('0 9 * * MON-FRI', 'Europe/Berlin', at('2027-01-01T12:00:00Z'))), '2027-01-04T08:00:00.000Z');
  });

  it('follows the library on DST: a skipped time fires after the gap, a repeated one fires once', () => {
    const zone = 'America/New_York';
    assert.equal(iso(nextCronSlot('30 2 * * *', zone, at('2027-03-13T12:00:00Z'))), '2027-03-14T07:30:00.000Z');
    const first = nextCronSlot('30 1 * * *', zone, at('2027-11-06T12:00:00Z'));
    assert.equal(iso(first), '2027-11-07T05:30:00.000Z');
    assert.equal(iso(nextCronSlot('30 1 * * *', zone, first)), '2027-11-08T06:30:00.000Z');
  });

  it('refuses bad expressions and zones with a clear message', () => {
    assert.throws(() => parseCron('61 * * * *', 'UTC', new Date()), /invalid cron expression "61 \* \* \* \*"/);
    assert.throws(() => parseCron('* * *', 'UTC', new Date()), /expected 5 fields/);
    assert.throws(() => parseCron('* * * * * * *', 'UTC', new Date()), /expected 5 fields/);
    assert.throws(() => parseCron('* * * * *', 'Mars/Base', new Date()), /unknown time zone "Mars\/Base"/);
  });
});

describe('nextSlot', () => {
  it('is null for a one-shot, the period slot or the cron slot otherwise', () => {
    const now = at('2027-01-01T10:00:00Z');
    assert.equal(nextSlot({ anchor: null, periodId: null, periodCount: null, cron: null, tz: 'UTC' }, now), null);
    assert.equal(iso(nextSlot({ anchor: at('2027-01-01T09:00:00Z'), periodId: 'HOU', periodCount: 2, cron: null, tz: 'UTC' }, now)), '2027-01-01T11:00:00.000Z');
    assert.equal(iso(nextSlot({ anchor: null, periodId: null, periodCount: null, cron: '*/15 * * * *', tz: 'UTC' }, now)), '2027-01-01T10:15:00.000Z');
  });
});

describe('CLI schedule arguments', () => {
  it('parses --every into the seed period codes', () => {
    assert.deepEqual(parseEvery('2h'), { periodId: 'HOU', count: 2 });
    assert.deepEqual(parseEvery('10s'), { periodId: 'SEC', count: 10 });
    assert.deepEqual(parseEvery('5m'), { periodId: 'MIN', count: 5 });
    assert.deepEqual(parseEvery('1d'), { periodId: 'DAY', count: 1 });
    assert.deepEqual(parseEvery('3 days'), { periodId: 'DAY', count: 3 });
    assert.deepEqual(parseEvery('1w'), { periodId: 'WEE', count: 1 });
    assert.deepEqual(parseEvery('1mo'), { periodId: 'MON', count: 1 });
    assert.throws(() => parseEvery('2x'), /expected a period/);
    assert.throws(() => parseEvery('0h'), /expected a period/);
  });
  it('parses --at', () => {
    assert.equal(parseTime('2027-01-31T09:00:00Z').toISOString(), '2027-01-31T09:00:00.000Z');
    assert.equal(parseTime('2027-01-31 09:00+01:00').toISOString(), '2027-01-31T08:00:00.000Z');
    assert.throws(() => parseTime('tomorrow'), /ISO 8601/);
  });
});

describe('dueSlots (shed_missed)', () => {
  const every = (periodId: 'SEC' | 'HOU' | 'DAY', anchor: Date, tz = 'UTC') => ({ anchor, periodId, periodCount: 1, cron: null, tz });

  it('lists the first slots oldest first and counts them all, from the slot fired to now', () => {
    const anchor = at('2027-01-01T00:00:00Z');
    const due = dueSlots(every('HOU', anchor), anchor, at('2027-01-01T03:30:00Z'), 10);
    assert.deepEqual(due.slots.map(iso), ['2027-01-01T00:00:00.000Z', '2027-01-01T01:00:00.000Z', '2027-01-01T02:00:00.000Z', '2027-01-01T03:00:00.000Z']);
    assert.equal(due.total, 4);
    const capped = dueSlots(every('HOU', anchor), anchor, at('2027-01-01T03:30:00Z'), 2);
    assert.deepEqual(capped.slots.map(iso), ['2027-01-01T00:00:00.000Z', '2027-01-01T01:00:00.000Z']);
    assert.equal(capped.total, 4);
  });

  it('one slot due: total 1 (a late fire, nothing missed)', () => {
    const anchor = at('2027-01-01T00:00:00Z');
    assert.equal(dueSlots(every('HOU', anchor), anchor, at('2027-01-01T00:59:59Z'), 0).total, 1);
  });

  it('counts a year of every-second slots by arithmetic, not one by one', () => {
    const anchor = at('2027-01-01T00:00:00Z');
    const due = dueSlots(every('SEC', anchor), anchor, at('2028-01-01T00:00:00Z'), 3);
    assert.equal(due.slots.length, 3);
    assert.equal(due.total, 365 * 86_400 + 1);
  });

  it('counts calendar days across a DST change', () => {
    const anchor = at('2027-03-20T08:00:00Z'); // 09:00 Berlin, before the spring change (Mar 28)
    const due = dueSlots(every('DAY', anchor, 'Europe/Berlin'), anchor, at('2027-04-02T12:00:00Z'), 100);
    assert.equal(due.total, 14);
    assert.equal(iso(due.slots.at(-1)!), '2027-04-02T07:00:00.000Z', '09:00 Berlin in summer time');
  });

  it('counts cron slots one by one up to 1000 past the copies, then from their spacing', () => {
    const cron = { anchor: null, periodId: null, periodCount: null, cron: '*/10 * * * * *', tz: 'UTC' };
    const first = at('2027-01-01T00:00:00Z');
    const small = dueSlots(cron, first, at('2027-01-01T00:01:00Z'), 2);
    assert.deepEqual(small.slots.map(iso), ['2027-01-01T00:00:00.000Z', '2027-01-01T00:00:10.000Z']);
    assert.equal(small.total, 7);
    // A day: 8641 slots, past the 1000 counted; even spacing makes the estimate exact.
    assert.equal(dueSlots(cron, first, at('2027-01-02T00:00:00Z'), 5).total, 8_641);
  });
});
