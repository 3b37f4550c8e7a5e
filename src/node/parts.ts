import type pg from 'pg';
import type { Logger } from 'pino';
import { clientConfig } from '../db/connection.js';
import { Listener } from '../db/listener.js';
import type { ServerGuard } from '../db/server-guard.js';
import type { Notification } from '../db/notifications.js';
import type { Statements } from '../sql/queries/index.js';
import { Claimer } from './claim/claimer.js';
import type { NodeControl } from './control/control.js';
import type { NodeStatus } from './control/status.js';
import { dispatchNotification } from './control/dispatch.js';
import type { NodeEvents } from './events.js';
import { Lease } from './lease/lease.js';
import { LeaseKeeper } from './lease/lease-keeper.js';
import { ListenCheck } from './lease/listen-check.js';
import { LockSession } from './lease/lock-session.js';
import { termEvents } from './lease/term.js';
import type { NodeOptions } from './options.js';
import { Reaper } from './process/reaper.js';
import { SpawnHelper } from './process/spawner.js';
import type { SpawnPolicy } from './process/task-process.js';
import { readWatchTimes, recoverWorker } from './recovery/recovery.js';
import { RecoveryWatch } from './recovery/recovery-watch.js';
import { LiveRuns } from './runs/live-runs.js';
import { OutputWriter } from './runs/output-writer.js';
import { ControlWriter } from './runs/control-writer.js';
import { ResultWriter } from './runs/result-writer.js';
import type { NamedService } from './services.js';
import { DelayedTasks } from './timers/delayed.js';
import { Retention } from './timers/retention.js';
import { Scheduler } from './timers/scheduler.js';
import { RunTracing } from './tracing/run-tracing.js';
import { tracingWanted } from './tracing/sdk.js';

/** See LockSession: a standby's pause before it watches again after its session was lost. */
const LOCK_WATCH_GRACE_MS = 2_000;

/** What every part is built from: known once the node's pool exists and its schema is ready. */
export interface NodeContext {
  options: NodeOptions;
  schema: string;
  queries: Statements;
  log: Logger;
  events: NodeEvents;
  pool: pg.Pool;
  /** Admits every connection of the node (split brain): the pool's, the listener's, the lock session's. */
  guard: ServerGuard;
  policy: SpawnPolicy;
  status: NodeStatus;
}

/** The parts of a node (docs/node.md lists them, with what each does). */
export interface NodeParts {
  output: OutputWriter;
  control: ControlWriter;
  writer: ResultWriter;
  claimer: Claimer;
  listener: Listener;
  reaper: Reaper;
  spawner: SpawnHelper;
  lockSession: LockSession;
  lease: LeaseKeeper;
  runs: LiveRuns;
  listenCheck: ListenCheck;
  scheduler: Scheduler;
  delayed: DelayedTasks;
  retention: Retention;
  recoveryWatch: RecoveryWatch;
  /** Started in this order when the node starts, stopped in reverse when it has stopped. */
  services: NamedService[];
  /** Work only while the node holds the lease: started when a term begins, stopped when it ends. */
  termServices: NamedService[];
}

/** Builds every part of a node, wired to `node` (which reacts to what they tell). */
export function buildParts(c: NodeContext, node: NodeControl): NodeParts {
  const { options: o, pool, queries, schema, log, events } = c;
  // PGTASKS_OLD_TURNOVER=1: runs' ends go in statements of their own, never with a claim (the
  // path before turnovers, kept for comparison: bench/throughput.ts measures both in one run).
  const separateEnds = process.env.PGTASKS_OLD_TURNOVER === '1';
  const reaper = new Reaper();
  const spawner = new SpawnHelper(o.spawner, log, o.containment);
  const writer = new ResultWriter(pool, queries, o.workerId, o.nodeName, log, events);
  const output = new OutputWriter(pool, queries, schema, o.outputKeep, log, events);
  const control = new ControlWriter(pool, queries, o.workerId, log, events);
  // A plain subscriber of the runs' events, but for the one hook that gives a run its span
  // (and the task its TRACEPARENT) before the process starts. Without tracing: no hook at all.
  const tracing = tracingWanted(o.otel) ? new RunTracing(events, { workerId: o.workerId, groupId: o.groupId, nodeName: o.nodeName }, log) : null;
  const trace = tracing ? tracing.begin.bind(tracing) : undefined;
  const runs = new LiveRuns({ pool, queries, workerId: o.workerId }, { ...o, policy: c.policy, trace }, () => spawner.current, reaper, writer, log, { ended: () => node.onRunEnded() }, events, output, control);
  const lockSession = new LockSession(clientConfig({ connectionString: o.connectionString, sessionUrl: o.sessionUrl }, c.guard), queries, o.workerId, LOCK_WATCH_GRACE_MS, log, {
    released: () => lease.lockReleased(),
    held: (pid) => lease.lockHeld(pid),
  });
  const lease = new LeaseKeeper(new Lease(pool, queries, o, log, c.guard), o.leaseSeconds, schema, log, termEvents(node), lockSession);
  const scheduler = new Scheduler(pool, queries, o.groupId, log, () => node.hint(), events);
  const delayed = new DelayedTasks(pool, queries, o.groupId, log);
  const retention = new Retention(pool, queries, o.nodeName, o.retentionEveryMs, log);
  const recoveryWatch = new RecoveryWatch(
    (id) => recoverWorker(pool, queries, id, o.workerId, o.recoveryDelaySeconds, log),
    (id) => readWatchTimes(pool, queries, id, o.workerId, o.recoveryDelaySeconds),
    o.recoveryDelaySeconds * 1000,
    log,
  );
  const claimer = new Claimer(pool, queries, schema, o, log, {
    canClaim: () => node.canClaim(),
    freeSlots: () => o.maxTasks - runs.size,
    epoch: () => lease.epoch,
    start: (row, epoch, claimedAt) => {
      // A claim's reply that comes back after the fence (or a take-over) starts nothing:
      // its rows stay marked live under that term and are recovered with it.
      if (lease.held && lease.epoch === epoch) runs.start(row, epoch, claimedAt);
      else log.warn({ task: row.id, attempt: row.attempt, epoch }, 'claimed after the lease ended: not started, left to recovery');
    },
    lostClaims: (found, epoch) => {
      if (lease.held && lease.epoch === epoch) runs.endLostClaims(found, epoch);
    },
    takeEnds: (epoch) => (separateEnds ? [] : writer.takeEnds(epoch)),
    endsDone: (epoch, ends, ended) => writer.turnoverDone(epoch, ends, ended),
    claimDone: () => writer.claimDone(),
  }, events);
  if (!separateEnds) writer.leaveEndsTo(() => claimer.willClaim);
  const listenCheck = new ListenCheck(o.workerId);
  const listener = new Listener(clientConfig({ connectionString: o.connectionString, sessionUrl: o.sessionUrl }, c.guard), schema, log);
  listener.on('notification', (n: Notification) => dispatchNotification(node, n));
  listener.on('connected', (reconnect: boolean) => {
    events.publish('listener:connected', { reconnect });
    listenCheck.reset();
    node.resync();
  });
  listener.on('disconnected', (error: Error) => events.publish('listener:lost', { error: error.message }));
  return {
    output, control, writer, claimer, listener, reaper, spawner, lockSession, lease, runs, listenCheck, scheduler, delayed, retention, recoveryWatch,
    // The lease last: a term begins with every part ready for it. The listener before it, so
    // that no notification of the term is missed; the lock session's stop after the lease's,
    // so that a standby woken by the lock finds the worker released.
    services: [
      // First, so that it stops last: after the runs have ended, their spans are exported.
      ...(tracing ? [{ name: 'tracing', service: tracing }] : []),
      { name: 'output writer', service: output },
      { name: 'control writer', service: control },
      { name: 'result writer', service: writer },
      { name: 'claimer', service: claimer },
      { name: 'listener', service: listener },
      // No process to start or to reap with a bench's executor (NodeOptions.executor).
      ...(o.executor ? [] : [{ name: 'reaper', service: reaper }, { name: 'spawn helper', service: spawner }]),
      { name: 'lock session', service: lockSession },
      // Not once the node is stopping (a shutdown while it started): no term is taken then.
      { name: 'lease keeper', service: { start: () => (c.status.stopping ? undefined : lease.start()), stop: () => lease.stop() } },
    ],
    termServices: [
      { name: 'scheduler', service: scheduler },
      { name: 'delayed tasks', service: delayed },
      { name: 'retention', service: retention },
      { name: 'recovery watch', service: recoveryWatch },
    ],
  };
}
