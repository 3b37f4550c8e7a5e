-- Version 5: runs. A run is one execution of a task: claimed under a lease term, started as a
-- process group, ended with an outcome. task.attempt numbers them (0 before the first); every
-- claim starts the next one and writes its row in task_run, and everything a node writes
-- about a run names it (task id, attempt, lease epoch), never the task id alone. A run is live
-- until its process is known to be gone (finished is set): a task is never claimed while a
-- run of it is live, whatever users wrote to its row meanwhile, so a task never has two live
-- processes. The task row keeps the latest run's figures, so the seed's columns still answer.

SET LOCAL search_path TO {{schema}}, pg_catalog;

ALTER TABLE task
  ADD COLUMN attempt int NOT NULL DEFAULT 0,
  -- Why the latest run ended, as data for policies; error stays text for people.
  ADD COLUMN end_reason text
      CONSTRAINT task_end_reason_valid CHECK (end_reason IN (
        'completed', 'exit_code', 'signal', 'spawn_error', 'cancelled', 'timeout',
        'worker_failed', 'lost', 'node_stopped', 'dependency', 'refused', 'oom'));

-- Timeouts: a run that exceeds its task's timeout (else its group's) is killed, whole process
-- group, and ends CF 'timeout'. null = no limit.
ALTER TABLE task
  ADD COLUMN timeout interval CONSTRAINT task_timeout_positive CHECK (timeout > interval '0');
ALTER TABLE task_group
  ADD COLUMN timeout interval CONSTRAINT task_group_timeout_positive CHECK (timeout > interval '0');

-- Retries: a run that ends with an end reason in retry_on, before max_attempts runs, queues
-- its task again (AW) with run_after = its end + a backoff; the claim skips it until then.
-- Each column null = the group's, else the default: 1 attempt (no retry), retry on
-- exit_code, signal, timeout, worker_failed and lost, backoff 1 s doubling up to 10 min.
ALTER TABLE task
  ADD COLUMN max_attempts int CONSTRAINT task_max_attempts_positive CHECK (max_attempts >= 1),
  ADD COLUMN backoff_base interval CONSTRAINT task_backoff_base_positive CHECK (backoff_base > interval '0'),
  ADD COLUMN backoff_cap interval CONSTRAINT task_backoff_cap_positive CHECK (backoff_cap > interval '0'),
  ADD COLUMN retry_on text[] CONSTRAINT task_retry_on_valid CHECK (retry_on <@ ARRAY[
    'exit_code', 'signal', 'spawn_error', 'timeout', 'worker_failed', 'lost', 'oom']::text[]),
  -- A waiting task is not claimed before this (a retry's backoff, or a delayed start).
  ADD COLUMN run_after timestamptz;
ALTER TABLE task_group
  ADD COLUMN max_attempts int CONSTRAINT task_group_max_attempts_positive CHECK (max_attempts >= 1),
  ADD COLUMN backoff_base interval CONSTRAINT task_group_backoff_base_positive CHECK (backoff_base > interval '0'),
  ADD COLUMN backoff_cap interval CONSTRAINT task_group_backoff_cap_positive CHECK (backoff_cap > interval '0'),
  ADD COLUMN retry_on text[] CONSTRAINT task_group_retry_on_valid CHECK (retry_on <@ ARRAY[
    'exit_code', 'signal', 'spawn_error', 'timeout', 'worker_failed', 'lost', 'oom']::text[]);

-- The one retry rule, for the node's record of a run's end and the recovery of a failed
-- worker alike: the delay before task t runs again after a run that ended with p_end_reason,
-- or null when it does not retry (no attempt left, or a reason not in retry_on). The delay is
-- backoff_base × 2^(attempt − 1), at most backoff_cap, times a jitter of 0.75 to 1.25, so
-- that tasks failing together do not retry together. With the defaults (1 s, 10 min) the
-- delays after attempts 1, 2, 3 … are about 1, 2, 4, 8, 16, 32, 64, 128, 256, 512 s, then
-- 600 s each.
CREATE OR REPLACE FUNCTION retry_delay(t task, p_end_reason text) RETURNS interval
LANGUAGE sql
SET search_path = {{schema}}, pg_catalog
AS $$
  -- greatest(attempt, 1): a task set to AE by hand, never claimed, has had its one run.
  SELECT CASE
           WHEN greatest(t.attempt, 1) < coalesce(t.max_attempts, g.max_attempts, 1)
            AND p_end_reason = ANY (coalesce(t.retry_on, g.retry_on,
                  ARRAY['exit_code', 'signal', 'timeout', 'worker_failed', 'lost']))
           THEN least(coalesce(t.backoff_cap, g.backoff_cap, interval '10 minutes'),
                      coalesce(t.backoff_base, g.backoff_base, interval '1 second') * power(2, least(greatest(t.attempt, 1) - 1, 40)))
                * (0.75 + random() / 2)
         END
    FROM (SELECT 1) AS one
    LEFT JOIN task_group g ON g.id = t.group_id
$$;

-- The claim's indexes hold only what may run now: a task waiting for its run_after enters
-- them when a node's retry timer clears run_after (task_delayed_idx finds those due).
DROP INDEX IF EXISTS task_waiting_any_idx;
DROP INDEX IF EXISTS task_waiting_pinned_idx;
CREATE INDEX task_waiting_any_idx ON task (group_id, priority, last_state_change, id)
  WHERE state_id = 'AW' AND worker_id IS NULL AND run_after IS NULL;
CREATE INDEX task_waiting_pinned_idx ON task (worker_id, group_id, priority, last_state_change, id)
  WHERE state_id = 'AW' AND worker_id IS NOT NULL AND run_after IS NULL;
CREATE INDEX task_delayed_idx ON task (group_id, run_after)
  WHERE state_id = 'AW' AND run_after IS NOT NULL;

-- No foreign key to task: its check would cost every claim a lookup and lock per run (about
-- an eighth of the claim's time) for rows the claim itself has just locked. A statement
-- trigger deletes the runs of deleted tasks instead.
CREATE TABLE task_run (
  task_id     bigint      NOT NULL,
  attempt     int         NOT NULL,
  worker_id   int         NOT NULL,
  lease_epoch bigint      NOT NULL,
  node_name   text,
  pid         int,
  started     timestamptz NOT NULL DEFAULT now(),
  -- started + the timeout in force at the claim; null = none
  deadline    timestamptz,
  -- null while the run is live: its process may still be running
  finished    timestamptz,
  exit_code   int,
  exit_signal text,
  end_reason  text
              CONSTRAINT task_run_end_reason_valid CHECK (end_reason IN (
                'completed', 'exit_code', 'signal', 'spawn_error', 'cancelled', 'timeout',
                'worker_failed', 'lost', 'node_stopped', 'dependency', 'refused', 'oom')),
  error       text,
  output      text,
  -- What the process used (the spawn helper's wait4: the leader and the children it waited
  -- for); null where it cannot be told (tasks started with child_process.spawn)
  cpu_user_ms   bigint,
  cpu_system_ms bigint,
  max_rss_kb    bigint,
  PRIMARY KEY (task_id, attempt)
);

-- Live runs are few (what runs now), and this index holds only them: the claim asks "does
-- this task have one?" (a probe by task_id), and a node asks "which are mine?" (its
-- cancellations, lost claims, a recovery) by reading the whole small index, never the history.
CREATE INDEX task_run_live_idx ON task_run (task_id) WHERE finished IS NULL;

CREATE OR REPLACE FUNCTION task_delete_runs() RETURNS trigger
LANGUAGE plpgsql
SET search_path = {{schema}}, pg_catalog
AS $$
BEGIN
  DELETE FROM task_run r USING old_rows o WHERE r.task_id = o.id;
  RETURN NULL;
END;
$$;
DROP TRIGGER IF EXISTS task_delete_runs ON task;
CREATE TRIGGER task_delete_runs AFTER DELETE ON task
  REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION task_delete_runs();

-- History for what ran before this version: the last run of each task that ran, live if it
-- is running now (the node that runs it finishes it by its identity: attempt 1).
UPDATE task SET attempt = 1 WHERE started IS NOT NULL;
INSERT INTO task_run (task_id, attempt, worker_id, lease_epoch, node_name, pid, started, finished, exit_code, exit_signal, error, output)
SELECT id, 1, worker_id, coalesce(lease_epoch, 0), node_name, pid, started,
       CASE WHEN state_id IN ('AE', 'AC') THEN NULL ELSE coalesce(finished, last_state_change) END,
       exit_code, exit_signal, error, output
  FROM task
 WHERE started IS NOT NULL AND worker_id IS NOT NULL;

-- The lifecycle rules of version 1, with live runs: a task whose process still runs (its row
-- set to C* or re-queued meanwhile) is cancelled by killing that process, not at once.
-- No SET search_path on it (that costs every row a GUC save and restore): the one query it
-- makes, on the rare cancel of a task that is not executing, names its schema itself.
CREATE OR REPLACE FUNCTION task_before_update() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
  live boolean := false;
BEGIN
  IF OLD.state_id IN ('AE', 'AC') AND NEW.worker_id IS DISTINCT FROM OLD.worker_id THEN
    RAISE EXCEPTION 'can''t change the worker_id of task % while it is % (cancel it first)',
      OLD.id, OLD.state_id USING ERRCODE = 'check_violation';
  END IF;

  -- attempt counts the runs: only a claim moves it, by one, as it starts the next run. The
  -- node's writes about a run are matched on it.
  IF NEW.attempt IS DISTINCT FROM OLD.attempt
     AND NOT (NEW.attempt = OLD.attempt + 1 AND OLD.state_id = 'AW' AND NEW.state_id = 'AE') THEN
    RAISE EXCEPTION 'the attempt of task % is kept by pg-tasks: it counts the runs (see task_run)', OLD.id
      USING ERRCODE = 'check_violation';
  END IF;

  IF NEW.state_id IS DISTINCT FROM OLD.state_id THEN
    IF NEW.state_id = 'AC' AND OLD.state_id NOT IN ('AE', 'AC') THEN
      EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I.task_run r WHERE r.task_id = $1 AND r.finished IS NULL)', TG_TABLE_SCHEMA)
         INTO live USING OLD.id;
    END IF;
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
      -- run_after; the claim waits for the run's process to be gone anyway.
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

-- Version 1's notifications, with the cancel of a task whose row names no worker (re-queued
-- while its process still ran) sent to the worker whose run is live, and tasks that wait for
-- a time announced as 'delayed', not 'queued'.
CREATE OR REPLACE FUNCTION task_notify() RETURNS trigger
LANGUAGE plpgsql
SET search_path = {{schema}}, pg_catalog
AS $$
DECLARE
  r record;
BEGIN
  FOR r IN SELECT DISTINCT group_id FROM new_rows WHERE state_id = 'AW' AND run_after IS NULL LOOP
    PERFORM pg_notify(TG_TABLE_SCHEMA, json_build_object('e', 'queued', 'g', r.group_id)::text);
  END LOOP;
  -- Waiting for a time (a retry's backoff): the group's nodes re-arm their retry timers.
  FOR r IN SELECT DISTINCT group_id FROM new_rows WHERE state_id = 'AW' AND run_after IS NOT NULL LOOP
    PERFORM pg_notify(TG_TABLE_SCHEMA, json_build_object('e', 'delayed', 'g', r.group_id)::text);
  END LOOP;
  FOR r IN SELECT DISTINCT coalesce(n.worker_id, live.worker_id) AS worker_id
             FROM new_rows n
             LEFT JOIN task_run live ON live.task_id = n.id AND live.finished IS NULL AND n.worker_id IS NULL
            WHERE n.state_id = 'AC' LOOP
    PERFORM pg_notify(TG_TABLE_SCHEMA, json_build_object('e', 'cancel', 'w', r.worker_id)::text);
  END LOOP;
  RETURN NULL;
END;
$$;

-- The shipped recovery policy, now on end reasons rather than error text, and with retries:
-- every task the failed worker was running ended with it (the process is gone). One being
-- cancelled ends CC; an executing one ends CF with end_reason 'worker_failed', and is queued
-- again if its recover_policy (its own, else its group's) is 'requeue', or if it retries on
-- worker_failed with attempts left (after its backoff). Only the shipped policy of version 3
-- is replaced: a recover_worker_tasks a user wrote is left as it is.
DO $migration$
DECLARE
  current_body text := (SELECT prosrc FROM pg_proc WHERE oid = to_regprocedure('recover_worker_tasks(int)'));
  version3_body text := $v3$
        -- Every task the failed worker was running failed with it; the process is gone.
        -- Those whose policy is 'requeue' (their own, else their group's) are queued again.
        UPDATE task t
           SET state_id = 'CF', finished = now(),
               error = CASE WHEN t.state_id = 'AE'
                             AND coalesce(t.recover_policy,
                                          (SELECT g.recover_policy FROM task_group g WHERE g.id = t.group_id),
                                          'fail') = 'requeue'
                            THEN 'Worker failed; re-queued' ELSE 'Worker failed' END
         WHERE t.worker_id = p_worker_id AND t.state_id IN ('AE', 'AC');
        UPDATE task
           SET state_id = 'AW', worker_id = NULL
         WHERE worker_id = p_worker_id AND state_id = 'CF' AND error = 'Worker failed; re-queued'
           AND finished = now();
      $v3$;
BEGIN
  IF current_body IS NULL
     OR btrim(regexp_replace(current_body, '\s+', ' ', 'g')) = btrim(regexp_replace(version3_body, '\s+', ' ', 'g')) THEN
    EXECUTE format($function$
      CREATE OR REPLACE FUNCTION %I.recover_worker_tasks(p_worker_id int) RETURNS void
      LANGUAGE sql
      SET search_path = %I, pg_catalog
      AS $body$
        UPDATE task
           SET state_id = 'CC', finished = now(), end_reason = 'cancelled', error = 'Cancelled (its worker failed)'
         WHERE worker_id = p_worker_id AND state_id = 'AC';
        UPDATE task
           SET state_id = 'CF', finished = now(), end_reason = 'worker_failed', error = 'Worker failed'
         WHERE worker_id = p_worker_id AND state_id = 'AE';
        -- Queued again: by the recover policy at once, else as a retry after its backoff.
        UPDATE task t
           SET state_id = 'AW', worker_id = NULL,
               run_after = CASE WHEN coalesce(t.recover_policy,
                                              (SELECT g.recover_policy FROM task_group g WHERE g.id = t.group_id),
                                              'fail') = 'requeue'
                                THEN NULL ELSE now() + retry_delay(t, 'worker_failed') END
         WHERE t.worker_id = p_worker_id AND t.state_id = 'CF' AND t.end_reason = 'worker_failed'
           AND t.finished = now()
           AND (coalesce(t.recover_policy,
                         (SELECT g.recover_policy FROM task_group g WHERE g.id = t.group_id),
                         'fail') = 'requeue'
                OR retry_delay(t, 'worker_failed') IS NOT NULL);
      $body$
    $function$, current_schema(), current_schema());
  END IF;
END;
$migration$;
