-- Version 7: dependencies. A task with depends_on (task ids) waits until every task it depends
-- on has ended CS; if one of them ends CF or CC (for good: a task that retries is AW between
-- its attempts), it ends CC with end_reason 'dependency' instead, without a process, and so
-- do its own dependents, transitively. Everything is decided in the database, per statement:
-- a node learns that a task may run from the usual 'queued' notification.

SET LOCAL search_path TO {{schema}}, pg_catalog;

ALTER TABLE task
  ADD COLUMN depends_on bigint[],
  -- How many of depends_on have not ended CS: the claim takes only tasks with none left.
  -- Kept by pg-tasks (a trigger at the end of each statement that changes a task's state).
  ADD COLUMN deps_left int NOT NULL DEFAULT 0;

-- The claim's indexes hold only what may start now: not a task still waiting for others.
DROP INDEX IF EXISTS task_waiting_any_idx;
DROP INDEX IF EXISTS task_waiting_pinned_idx;
CREATE INDEX task_waiting_any_idx ON task (group_id, priority, last_state_change, id)
  WHERE state_id = 'AW' AND worker_id IS NULL AND run_after IS NULL AND live_worker_id IS NULL AND deps_left = 0;
CREATE INDEX task_waiting_pinned_idx ON task (worker_id, group_id, priority, last_state_change, id)
  WHERE state_id = 'AW' AND worker_id IS NOT NULL AND run_after IS NULL AND live_worker_id IS NULL AND deps_left = 0;

-- Who depends on a task, for the tasks that may still run (waiting or draft): the statement
-- that ends a task finds its dependents in the first; the second says at once that there are
-- none at all (a GIN index can't answer a query with no key).
CREATE INDEX task_dependents_idx ON task USING gin (depends_on)
  WHERE depends_on IS NOT NULL AND state_id IN ('AW', 'DR');
CREATE INDEX task_dependent_tasks_idx ON task (id)
  WHERE depends_on IS NOT NULL AND state_id IN ('AW', 'DR');

-- When written: the list must name existing tasks, other than the task itself, and (when it
-- changes on an existing task) must not close a cycle. (A task inserted can't be named by
-- others yet, so only an update can close one.) A task that waits starts blocked; the
-- statement's end (task_deps_release) counts what is left.
CREATE OR REPLACE FUNCTION task_deps_rules() RETURNS trigger
LANGUAGE plpgsql
SET search_path = {{schema}}, pg_catalog
AS $$
DECLARE
  missing bigint;
  cycle_at bigint;
BEGIN
  IF NEW.depends_on IS NOT NULL AND (TG_OP = 'INSERT' OR NEW.depends_on IS DISTINCT FROM OLD.depends_on) THEN
    IF array_position(NEW.depends_on, NULL) IS NOT NULL THEN
      RAISE EXCEPTION 'depends_on of a task can''t hold NULL' USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.id = ANY (NEW.depends_on) THEN
      RAISE EXCEPTION 'task % can''t depend on itself', NEW.id USING ERRCODE = 'check_violation';
    END IF;
    SELECT d INTO missing FROM unnest(NEW.depends_on) AS d
     WHERE NOT EXISTS (SELECT 1 FROM task p WHERE p.id = d) LIMIT 1;
    IF missing IS NOT NULL THEN
      RAISE EXCEPTION 'depends_on names task %, which does not exist', missing
        USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF TG_OP = 'UPDATE' THEN
      -- A cycle: the task is among what its new prerequisites depend on, transitively.
      WITH RECURSIVE up(id) AS (
        SELECT unnest(NEW.depends_on)
        UNION
        SELECT unnest(p.depends_on) FROM task p JOIN up ON p.id = up.id WHERE p.depends_on IS NOT NULL
      )
      SELECT id INTO cycle_at FROM up WHERE id = NEW.id LIMIT 1;
      IF cycle_at IS NOT NULL THEN
        RAISE EXCEPTION 'task % can''t depend on %: that would make a cycle (they depend on task %)',
          NEW.id, array_to_string(NEW.depends_on, ', '), NEW.id USING ERRCODE = 'check_violation';
      END IF;
    END IF;
  END IF;
  -- Entering AW or DR, or given prerequisites: blocked until the statement's end counts them.
  IF NEW.depends_on IS NOT NULL AND NEW.state_id IN ('AW', 'DR')
     AND (TG_OP = 'INSERT' OR NEW.state_id IS DISTINCT FROM OLD.state_id OR NEW.depends_on IS DISTINCT FROM OLD.depends_on) THEN
    NEW.deps_left := cardinality(NEW.depends_on);
  ELSIF NEW.depends_on IS NULL THEN
    NEW.deps_left := 0;
  END IF;
  RETURN NEW;
END;
$$;

DROP TRIGGER IF EXISTS task_deps_rules_insert ON task;
CREATE TRIGGER task_deps_rules_insert BEFORE INSERT ON task
  FOR EACH ROW WHEN (NEW.depends_on IS NOT NULL)
  EXECUTE FUNCTION task_deps_rules();
DROP TRIGGER IF EXISTS task_deps_rules_update ON task;
CREATE TRIGGER task_deps_rules_update BEFORE UPDATE ON task
  FOR EACH ROW
  WHEN (NEW.depends_on IS DISTINCT FROM OLD.depends_on
        OR (NEW.depends_on IS NOT NULL AND NEW.state_id IS DISTINCT FROM OLD.state_id))
  EXECUTE FUNCTION task_deps_rules();

-- At the end of each statement that wrote tasks: the waiting (or draft) tasks that depend on
-- a task it wrote, and the ones it wrote with prerequisites, count what is left; a waiting
-- one whose prerequisite ended CF or CC for good ends CC 'dependency'. Set-based: one
-- statement for the whole batch. Its own update runs this trigger again, one level further
-- down the graph, until nothing changes: that is how a cancel reaches the whole DAG. A task
-- whose count reaches 0 enters the claim's indexes, and task_notify wakes its group.
CREATE OR REPLACE FUNCTION task_deps_release() RETURNS trigger
LANGUAGE plpgsql
SET search_path = {{schema}}, pg_catalog
AS $$
DECLARE
  written bigint[];
BEGIN
  -- The usual statement (a node's claims, pids and ends, with no dependents anywhere) pays
  -- one probe of an empty index and nothing more.
  IF NOT EXISTS (SELECT 1 FROM task WHERE depends_on IS NOT NULL AND state_id IN ('AW', 'DR')) THEN
    RETURN NULL;
  END IF;
  -- Deleted tasks fail their dependents, as if ended CF.
  written := CASE WHEN TG_OP = 'DELETE' THEN ARRAY(SELECT id FROM new_rows)
                  ELSE ARRAY(SELECT id FROM new_rows WHERE state_id NOT IN ('AE', 'AC')) END;
  IF cardinality(written) = 0 THEN
    RETURN NULL;
  END IF;
  -- Concurrent statements. Each locks the dependents it is about to count (in id order), and
  -- the prerequisites of the dependents it wrote itself (FOR SHARE), then counts in a new
  -- snapshot (each statement here takes its own). So of two statements that end two
  -- prerequisites of one task, the second waits for the first and sees what it wrote; and a
  -- statement that writes a dependent while another ends one of its prerequisites either
  -- waits for that one, or makes it wait (its update of the prerequisite conflicts with the
  -- share lock) until the dependent is there to be found.
  PERFORM 1 FROM task t
   WHERE t.depends_on IS NOT NULL AND t.state_id IN ('AW', 'DR')
     AND (t.depends_on && written OR t.id = ANY (written))
   ORDER BY t.id
     FOR UPDATE;
  -- (Only for a statement's own writes: the recount below, one level down, would otherwise
  -- hold its dependent's row while waiting for a prerequisite another statement holds, while
  -- that one waits for the dependent.)
  IF pg_trigger_depth() = 1 THEN
    PERFORM 1 FROM task p
     WHERE p.id IN (SELECT unnest(t.depends_on) FROM task t
                     WHERE t.id = ANY (written) AND t.depends_on IS NOT NULL AND t.state_id IN ('AW', 'DR'))
     ORDER BY p.id
       FOR SHARE;
  END IF;
  UPDATE task d
     SET deps_left = c.deps_left,
         state_id   = CASE WHEN c.failed IS NOT NULL AND d.state_id = 'AW' THEN 'CC' ELSE d.state_id END,
         end_reason = CASE WHEN c.failed IS NOT NULL AND d.state_id = 'AW' THEN 'dependency' ELSE d.end_reason END,
         error      = CASE WHEN c.failed IS NOT NULL AND d.state_id = 'AW'
                           THEN format('Cancelled: it depends on task %s, which %s', c.failed, c.failed_what)
                           ELSE d.error END,
         finished   = CASE WHEN c.failed IS NOT NULL AND d.state_id = 'AW' THEN now() ELSE d.finished END
    FROM (SELECT t.id,
                 count(*) FILTER (WHERE p.state_id IS DISTINCT FROM 'CS')::int AS deps_left,
                 min(dep.id) FILTER (WHERE p.id IS NULL OR p.state_id IN ('CF', 'CC')) AS failed,
                 (array_agg(CASE WHEN p.id IS NULL THEN 'was deleted' ELSE 'ended ' || p.state_id END ORDER BY dep.id)
                    FILTER (WHERE p.id IS NULL OR p.state_id IN ('CF', 'CC')))[1] AS failed_what
            FROM task t
            CROSS JOIN LATERAL unnest(t.depends_on) AS dep(id)
            LEFT JOIN task p ON p.id = dep.id
           WHERE t.depends_on IS NOT NULL AND t.state_id IN ('AW', 'DR')
             AND (t.depends_on && written OR t.id = ANY (written))
           GROUP BY t.id) c
   WHERE d.id = c.id
     AND (d.deps_left <> c.deps_left OR (c.failed IS NOT NULL AND d.state_id = 'AW'));
  RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS task_deps_release_insert ON task;
CREATE TRIGGER task_deps_release_insert AFTER INSERT ON task
  REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION task_deps_release();
DROP TRIGGER IF EXISTS task_deps_release_update ON task;
CREATE TRIGGER task_deps_release_update AFTER UPDATE ON task
  REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION task_deps_release();
-- (The deleted rows, under the name the function reads.)
DROP TRIGGER IF EXISTS task_deps_release_delete ON task;
CREATE TRIGGER task_deps_release_delete AFTER DELETE ON task
  REFERENCING OLD TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION task_deps_release();

-- 'queued' only for tasks that may start: version 6's notifications, with deps_left = 0.
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
  SELECT array_agg(DISTINCT group_id) FILTER (WHERE state_id = 'AW' AND run_after IS NULL AND live_worker_id IS NULL AND deps_left = 0),
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
