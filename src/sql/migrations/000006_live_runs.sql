-- Version 6: a live run is marked on its task row; task_run holds the runs that ended.
-- Version 5 inserted a task_run row at every claim and updated it when the run ended: two
-- writes to a second table (and a probe of it in every claim) for each run, about a tenth of
-- the node's throughput. Now the claim marks the task row with whose process of run
-- `attempt` may still be alive (live_worker_id, live_epoch), and the run's end clears the
-- mark and writes the run's task_run row, once. The rule is unchanged: a task whose process
-- may still be alive is never claimed, whatever users write to its row meanwhile.

SET LOCAL search_path TO {{schema}}, pg_catalog;

-- Both null, or both set: the worker and the lease term of the live run (attempt = attempt).
-- Clearing them says the process is gone: only the node that ran it, or the recovery of its
-- worker, does that.
ALTER TABLE task
  ADD COLUMN live_worker_id int,
  ADD COLUMN live_epoch bigint,
  ADD CONSTRAINT task_live_run_whole CHECK ((live_worker_id IS NULL) = (live_epoch IS NULL));

-- The runs live at the upgrade move to their task rows (their task_run rows are written when
-- they end). Before the new trigger below, which would refuse to set the mark outside a claim.
UPDATE task t
   SET live_worker_id = r.worker_id, live_epoch = r.lease_epoch
  FROM task_run r
 WHERE r.task_id = t.id AND r.attempt = t.attempt AND r.finished IS NULL;
DELETE FROM task_run WHERE finished IS NULL;
DROP INDEX IF EXISTS task_run_live_idx;

-- The claim's indexes hold only what may start now: not a task whose earlier process still
-- lives (its row re-queued meanwhile). It enters them when that run's end clears the mark.
DROP INDEX IF EXISTS task_waiting_any_idx;
DROP INDEX IF EXISTS task_waiting_pinned_idx;
CREATE INDEX task_waiting_any_idx ON task (group_id, priority, last_state_change, id)
  WHERE state_id = 'AW' AND worker_id IS NULL AND run_after IS NULL AND live_worker_id IS NULL;
CREATE INDEX task_waiting_pinned_idx ON task (worker_id, group_id, priority, last_state_change, id)
  WHERE state_id = 'AW' AND worker_id IS NOT NULL AND run_after IS NULL AND live_worker_id IS NULL;

-- Live runs are few (what runs now): a node reads its own (cancellations, lost claims, the
-- recovery of its worker) from this small index, whatever the size of the table.
CREATE INDEX task_live_idx ON task (live_worker_id, live_epoch) WHERE live_worker_id IS NOT NULL;

-- The foreign key of a scheduled clone to its parent (ON DELETE SET NULL) had no index: each
-- deleted task cost a scan of the table, and deleting 40 000 ended tasks took 25 s instead
-- of 0.6 s. Only clones are in it.
CREATE INDEX IF NOT EXISTS task_shed_parent_idx ON task (shed_parent_id) WHERE shed_parent_id IS NOT NULL;

-- Version 5's lifecycle rules, with the live run read from the row itself.
CREATE OR REPLACE FUNCTION task_before_update() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
  live boolean := OLD.live_worker_id IS NOT NULL;
  claim boolean := NEW.attempt = OLD.attempt + 1 AND OLD.state_id = 'AW' AND NEW.state_id = 'AE';
BEGIN
  -- (A retry, AE to AW with a run_after, may go to any worker of the group.)
  IF OLD.state_id IN ('AE', 'AC') AND NEW.worker_id IS DISTINCT FROM OLD.worker_id
     AND NOT (NEW.state_id = 'AW' AND NEW.run_after IS NOT NULL) THEN
    RAISE EXCEPTION 'can''t change the worker_id of task % while it is % (cancel it first)',
      OLD.id, OLD.state_id USING ERRCODE = 'check_violation';
  END IF;

  -- attempt counts the runs: only a claim moves it, by one, as it starts the next run. The
  -- node's writes about a run are matched on it.
  IF NEW.attempt IS DISTINCT FROM OLD.attempt AND NOT claim THEN
    RAISE EXCEPTION 'the attempt of task % is kept by pg-tasks: it counts the runs (see task_run)', OLD.id
      USING ERRCODE = 'check_violation';
  END IF;
  -- The live-run mark is set by a claim (of a task with none) and cleared when the run ends.
  IF NEW.live_worker_id IS NOT NULL
     AND (NEW.live_worker_id IS DISTINCT FROM OLD.live_worker_id OR NEW.live_epoch IS DISTINCT FROM OLD.live_epoch)
     AND NOT (claim AND NOT live) THEN
    RAISE EXCEPTION 'the live run of task % is kept by pg-tasks: a claim marks it, its end clears it', OLD.id
      USING ERRCODE = 'check_violation';
  END IF;

  IF NEW.state_id IS DISTINCT FROM OLD.state_id THEN
    -- A waiting task with no process: cancelling it ends it at once.
    IF NEW.state_id = 'AC' AND OLD.state_id = 'AW' AND NOT live THEN
      NEW.state_id := 'CC';
      NEW.end_reason := 'cancelled';
      NEW.finished := now();
    END IF;

    IF NEW.state_id = 'AC' AND OLD.state_id NOT IN ('AW', 'AE') AND NOT live THEN
      RAISE EXCEPTION 'can''t cancel an inactive task (task % is %)', OLD.id, OLD.state_id
        USING ERRCODE = 'check_violation';
    ELSIF NEW.state_id IN ('DR', 'AW') AND OLD.state_id IN ('AE', 'AC')
          AND NOT (NEW.state_id = 'AW' AND NEW.run_after IS NOT NULL) THEN
      -- A running process answers for the task; queue it again once it has ended (or cancel
      -- it first). A node's retry, written with the run's end, goes straight to AW with a
      -- run_after.
      RAISE EXCEPTION 'can''t set task % to % while it is % (cancel it first)',
        OLD.id, NEW.state_id, OLD.state_id USING ERRCODE = 'check_violation';
    ELSIF NEW.state_id = 'AE' AND OLD.state_id <> 'AW' THEN
      RAISE EXCEPTION 'task % can only start executing from AW, not %', OLD.id, OLD.state_id
        USING ERRCODE = 'check_violation';
    ELSIF NEW.state_id IN ('CS', 'CF') AND OLD.state_id NOT IN ('AE', 'AC') THEN
      RAISE EXCEPTION 'task % can only complete or fail from AE or AC, not %', OLD.id, OLD.state_id
        USING ERRCODE = 'check_violation';
    ELSIF NEW.state_id = 'CC' AND OLD.state_id NOT IN ('AW', 'AE', 'AC') THEN
      -- From AE too: a node that ends its own tasks (shutdown in cancel mode, stop code 3)
      -- writes CC for tasks nobody asked to cancel.
      RAISE EXCEPTION 'task % can only become cancelled while it is active (AW, AE or AC), not %',
        OLD.id, OLD.state_id USING ERRCODE = 'check_violation';
    END IF;

    IF NEW.state_id = 'AW' THEN
      -- A fresh run: forget what the last one reported (task_run keeps it).
      NEW.error := NULL;
      NEW.exit_code := NULL;
      NEW.exit_signal := NULL;
      NEW.finished := NULL;
      NEW.pid := NULL;
      NEW.output := NULL;
      NEW.lease_epoch := NULL;
      NEW.end_reason := NULL;
    END IF;
    IF NEW.state_id <> 'AW' THEN
      NEW.run_after := NULL;
    END IF;
    NEW.last_state_change := now();
  END IF;
  RETURN NEW;
END;
$$;

-- A node's own writes (a run's pid, its end) pay for no rule they cannot break: each row
-- trigger runs only when a column it guards changes.
DROP TRIGGER IF EXISTS task_before_update ON task;
CREATE TRIGGER task_before_update BEFORE UPDATE ON task
  FOR EACH ROW
  WHEN (OLD.state_id IS DISTINCT FROM NEW.state_id OR OLD.worker_id IS DISTINCT FROM NEW.worker_id
        OR OLD.attempt IS DISTINCT FROM NEW.attempt OR OLD.live_worker_id IS DISTINCT FROM NEW.live_worker_id
        OR OLD.live_epoch IS DISTINCT FROM NEW.live_epoch)
  EXECUTE FUNCTION task_before_update();
DROP TRIGGER IF EXISTS task_schedule_rules ON task;
DROP TRIGGER IF EXISTS task_schedule_rules_update ON task;
CREATE TRIGGER task_schedule_rules BEFORE INSERT ON task
  FOR EACH ROW EXECUTE FUNCTION task_schedule_rules();
CREATE TRIGGER task_schedule_rules_update BEFORE UPDATE ON task
  FOR EACH ROW
  WHEN (OLD.next_start IS DISTINCT FROM NEW.next_start OR OLD.shed_period_id IS DISTINCT FROM NEW.shed_period_id
        OR OLD.shed_period_count IS DISTINCT FROM NEW.shed_period_count OR OLD.shed_cron IS DISTINCT FROM NEW.shed_cron
        OR OLD.shed_tz IS DISTINCT FROM NEW.shed_tz)
  EXECUTE FUNCTION task_schedule_rules();

-- The notifications of versions 1, 2 and 5 in one trigger function that reads the statement's
-- rows once (it was six reads, a fixed cost on every statement, a node's included), with two
-- changes: a cancel goes to the worker whose process lives (the row may name another, or
-- none, if it was re-queued meanwhile), and a statement that leaves tasks ended (C*) says
-- which, for clients waiting on them (TaskClient.wait): one notification per statement,
-- naming up to 100 tasks; without ids it means "look again".
--
-- Schedules: an update notifies for the scheduled rows it touched, changed or not: comparing
-- with the old rows would need a join of two transition tables, which have no statistics, and
-- a nested loop over 100 000 rows. A schedule switched off (next_start set to null) sends
-- nothing; the node's timer then finds nothing due and re-arms.
CREATE OR REPLACE FUNCTION task_notify() RETURNS trigger
LANGUAGE plpgsql
SET search_path = {{schema}}, pg_catalog
AS $$
DECLARE
  queued int[];
  delayed int[];
  cancels int[];
  schedules int[];
  ended bigint[];
  ended_count bigint;
  g int;
BEGIN
  -- Most of a node's statements (its claims, its pids) leave every row executing, with no
  -- schedule: nothing to say, found in one pass.
  IF NOT EXISTS (SELECT 1 FROM new_rows WHERE state_id <> 'AE' OR next_start IS NOT NULL OR shed_cron IS NOT NULL) THEN
    RETURN NULL;
  END IF;
  SELECT array_agg(DISTINCT group_id) FILTER (WHERE state_id = 'AW' AND run_after IS NULL AND live_worker_id IS NULL),
         array_agg(DISTINCT group_id) FILTER (WHERE state_id = 'AW' AND run_after IS NOT NULL),
         array_agg(DISTINCT coalesce(live_worker_id, worker_id)) FILTER (WHERE state_id = 'AC'),
         array_agg(DISTINCT group_id) FILTER (WHERE next_start IS NOT NULL OR shed_cron IS NOT NULL),
         (array_agg(id) FILTER (WHERE state_id IN ('CS', 'CF', 'CC')))[1:100],
         count(*) FILTER (WHERE state_id IN ('CS', 'CF', 'CC'))
    INTO queued, delayed, cancels, schedules, ended, ended_count
    FROM new_rows;
  FOREACH g IN ARRAY coalesce(queued, '{}') LOOP
    PERFORM pg_notify(TG_TABLE_SCHEMA, json_build_object('e', 'queued', 'g', g)::text);
  END LOOP;
  -- Waiting for a time (a retry's backoff): the group's nodes re-arm their retry timers.
  FOREACH g IN ARRAY coalesce(delayed, '{}') LOOP
    PERFORM pg_notify(TG_TABLE_SCHEMA, json_build_object('e', 'delayed', 'g', g)::text);
  END LOOP;
  FOREACH g IN ARRAY coalesce(cancels, '{}') LOOP
    PERFORM pg_notify(TG_TABLE_SCHEMA, json_build_object('e', 'cancel', 'w', g)::text);
  END LOOP;
  FOREACH g IN ARRAY coalesce(schedules, '{}') LOOP
    PERFORM pg_notify(TG_TABLE_SCHEMA, json_build_object('e', 'schedule', 'g', g)::text);
  END LOOP;
  IF ended_count > 100 THEN
    PERFORM pg_notify(TG_TABLE_SCHEMA, '{"e":"ended"}');
  ELSIF ended_count > 0 THEN
    PERFORM pg_notify(TG_TABLE_SCHEMA, json_build_object('e', 'ended', 'ids', ended)::text);
  END IF;
  RETURN NULL;
END;
$$;
DROP TRIGGER IF EXISTS task_schedule_notify_insert ON task;
DROP TRIGGER IF EXISTS task_schedule_notify_update ON task;
DROP FUNCTION IF EXISTS task_schedule_notify();
