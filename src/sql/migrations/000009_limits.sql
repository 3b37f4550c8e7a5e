-- Version 9: limits that hold across every node.
--   task_group.max_running   at most this many tasks of the group run at once (null: no limit;
--                            0 pauses the group)
--   task.concurrency_key     tasks that share a resource: at most concurrency_limit.max_running
--                            tasks with one key run at once, in any group (a key with no row
--                            there: 1, a mutex)
-- "Run" means a live run: a process that may still be alive (live_worker_id set). A dead
-- node's runs count until its worker is recovered, so a failover never starts a task that
-- would exceed a limit while the old process may still run.
--
-- The claim stays one statement. Counting live rows inside it would be wrong: a statement's
-- snapshot is taken before it waits for a lock, so two nodes claiming at once would each count
-- without the other's claims. claim_limits (called once by the claim, before it reads a task)
-- takes a transaction advisory lock, the group's for max_running and one for all keys, and
-- then counts in a snapshot of its own (each statement of a volatile function takes one): a
-- claim that held the lock has committed, and its runs are counted. The locks are held until
-- the claim commits, so claims of a limited group, and claims of keyed tasks, take turns.
-- Claims of groups with no limit and no keyed task waiting take no lock.

SET LOCAL search_path TO {{schema}}, pg_catalog;

ALTER TABLE task_group
  ADD COLUMN IF NOT EXISTS max_running int CONSTRAINT task_group_max_running_valid CHECK (max_running >= 0);

ALTER TABLE task
  ADD COLUMN IF NOT EXISTS concurrency_key text CONSTRAINT task_concurrency_key_valid CHECK (concurrency_key <> '');

CREATE TABLE IF NOT EXISTS concurrency_limit (
  key         text PRIMARY KEY CONSTRAINT concurrency_limit_key_valid CHECK (key <> ''),
  max_running int  NOT NULL CONSTRAINT concurrency_limit_max_running_valid CHECK (max_running >= 0)
);

-- What the counts read: the live runs of a group, the live runs with a key (few: what runs
-- now), and the waiting keyed tasks, by group and by key (none at all, for most users).
CREATE INDEX IF NOT EXISTS task_group_live_idx ON task (group_id) WHERE live_worker_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS task_key_live_idx ON task (concurrency_key)
  WHERE live_worker_id IS NOT NULL AND concurrency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS task_key_waiting_group_idx ON task (group_id)
  WHERE state_id = 'AW' AND concurrency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS task_key_waiting_idx ON task (concurrency_key)
  WHERE state_id = 'AW' AND concurrency_key IS NOT NULL;

-- For one claim of group p_group for p_free slots (p_held: the claim's lease term holds):
--   budget      how many tasks it may claim (p_free, less what the group's limit leaves)
--   keyed       whether it holds the keys' lock: if not, it claims no keyed task
--   blocked     keys at their limit (not even read by the claim)
--   room_keys,  for keys with live runs or a limit row, and room left: how many more may
--   rooms       start (any other key: 1)
CREATE OR REPLACE FUNCTION claim_limits(p_group int, p_free int, p_held boolean,
                             OUT budget int, OUT keyed boolean, OUT blocked text[],
                             OUT room_keys text[], OUT rooms int[])
LANGUAGE plpgsql VOLATILE
SET search_path = {{schema}}, pg_catalog
AS $$
DECLARE
  -- (This installation's own lock class: another schema in the database has its own table.)
  lock_class int := hashtext('pg-tasks limits ' || 'task'::regclass::oid::text);
  group_max int;
BEGIN
  budget := CASE WHEN p_held THEN greatest(p_free, 0) ELSE 0 END;
  keyed := false;
  blocked := '{}';
  IF budget = 0 THEN
    RETURN;
  END IF;
  IF EXISTS (SELECT 1 FROM task_group g WHERE g.id = p_group AND g.max_running IS NOT NULL) THEN
    PERFORM pg_advisory_xact_lock(lock_class, p_group);
    -- Read again under the lock: a change that committed meanwhile is seen.
    SELECT g.max_running INTO group_max FROM task_group g WHERE g.id = p_group;
    IF group_max IS NOT NULL THEN
      budget := least(budget, greatest(group_max - (SELECT count(*) FROM task t
                                                    WHERE t.group_id = p_group AND t.live_worker_id IS NOT NULL)::int, 0));
    END IF;
  END IF;
  IF budget > 0 AND EXISTS (SELECT 1 FROM task t WHERE t.group_id = p_group AND t.state_id = 'AW' AND t.concurrency_key IS NOT NULL) THEN
    -- One lock for every key: a claim doesn't know which keys it will take before it reads
    -- its tasks, and one lock can't deadlock. (Group locks are taken first, always.)
    PERFORM pg_advisory_xact_lock(lock_class, -1);
    keyed := true;
    -- Every key with live runs or a limit row (read here, under the lock: a limit changed
    -- while this claim waited is seen); a key in neither has the default room, 1.
    WITH live AS (
      SELECT t.concurrency_key AS key, count(*)::int AS n
        FROM task t
       WHERE t.live_worker_id IS NOT NULL AND t.concurrency_key IS NOT NULL
       GROUP BY t.concurrency_key
    ), room AS (
      SELECT coalesce(l.key, c.key) AS key, coalesce(c.max_running, 1) - coalesce(l.n, 0) AS room
        FROM live l FULL JOIN concurrency_limit c ON c.key = l.key
    )
    SELECT coalesce(array_agg(key) FILTER (WHERE room <= 0), '{}'),
           coalesce(array_agg(key) FILTER (WHERE room > 0), '{}'),
           coalesce(array_agg(room) FILTER (WHERE room > 0), '{}')
      INTO blocked, room_keys, rooms
      FROM room;
  END IF;
END;
$$;

-- A live run is counted under its task's group and key: they can't change until it has ended.
CREATE OR REPLACE FUNCTION task_limit_rules() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
  RAISE EXCEPTION 'can''t change the group_id or concurrency_key of task % while a process of it may run (attempt % on worker %)',
    OLD.id, OLD.attempt, OLD.live_worker_id USING ERRCODE = 'check_violation';
END;
$$;
DROP TRIGGER IF EXISTS task_limit_rules ON task;
CREATE TRIGGER task_limit_rules BEFORE UPDATE ON task
  FOR EACH ROW
  WHEN (OLD.live_worker_id IS NOT NULL
        AND (OLD.group_id IS DISTINCT FROM NEW.group_id OR OLD.concurrency_key IS DISTINCT FROM NEW.concurrency_key))
  EXECUTE FUNCTION task_limit_rules();

-- A raised limit may let waiting tasks start: wake the nodes that may claim them.
CREATE OR REPLACE FUNCTION task_group_limit_notify() RETURNS trigger
LANGUAGE plpgsql
SET search_path = {{schema}}, pg_catalog
AS $$
BEGIN
  PERFORM pg_notify(TG_TABLE_SCHEMA, json_build_object('e', 'queued', 'g', NEW.id)::text);
  RETURN NULL;
END;
$$;
DROP TRIGGER IF EXISTS task_group_limit_notify ON task_group;
CREATE TRIGGER task_group_limit_notify AFTER UPDATE ON task_group
  FOR EACH ROW WHEN (OLD.max_running IS DISTINCT FROM NEW.max_running)
  EXECUTE FUNCTION task_group_limit_notify();

CREATE OR REPLACE FUNCTION concurrency_limit_notify() RETURNS trigger
LANGUAGE plpgsql
SET search_path = {{schema}}, pg_catalog
AS $$
DECLARE
  keys text[];
  g int;
BEGIN
  keys := ARRAY(SELECT key FROM new_rows);
  IF TG_OP = 'UPDATE' THEN
    keys := keys || ARRAY(SELECT key FROM old_rows);
  END IF;
  FOR g IN SELECT DISTINCT t.group_id FROM task t
            WHERE t.state_id = 'AW' AND t.concurrency_key = ANY (keys) LOOP
    PERFORM pg_notify(TG_TABLE_SCHEMA, json_build_object('e', 'queued', 'g', g)::text);
  END LOOP;
  RETURN NULL;
END;
$$;
DROP TRIGGER IF EXISTS concurrency_limit_notify_update ON concurrency_limit;
CREATE TRIGGER concurrency_limit_notify_update AFTER UPDATE ON concurrency_limit
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION concurrency_limit_notify();
-- (Inserted and deleted rows: the same table under both names.)
DROP TRIGGER IF EXISTS concurrency_limit_notify_insert ON concurrency_limit;
CREATE TRIGGER concurrency_limit_notify_insert AFTER INSERT ON concurrency_limit
  REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION concurrency_limit_notify();
DROP TRIGGER IF EXISTS concurrency_limit_notify_delete ON concurrency_limit;
CREATE TRIGGER concurrency_limit_notify_delete AFTER DELETE ON concurrency_limit
  REFERENCING OLD TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION concurrency_limit_notify();

-- Version 7's notifications, and: a statement that ends runs (clears live marks) of a group
-- with max_running, or of keyed tasks, wakes the nodes that may now claim ('queued' to the
-- group, and to each group with a task waiting for one of those keys). A node that was held
-- back by a limit claims again only on such a hint.
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
  freed_groups int[];
  freed_keys text[];
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
         count(*) FILTER (WHERE state_id IN ('CS', 'CF', 'CC')),
         -- Rows that ran once and have no live run now: a run may have just ended. (More than
         -- that, sometimes: a hint too many costs a claim that finds nothing.)
         array_agg(DISTINCT group_id) FILTER (WHERE live_worker_id IS NULL AND started IS NOT NULL AND state_id <> 'AE'),
         array_agg(DISTINCT concurrency_key) FILTER (WHERE live_worker_id IS NULL AND started IS NOT NULL AND state_id <> 'AE'
                                                     AND concurrency_key IS NOT NULL)
    INTO queued, delayed, cancels, schedules, ended, ended_count, freed_groups, freed_keys
    FROM new_rows;
  IF freed_groups IS NOT NULL THEN
    queued := coalesce(queued, '{}') || ARRAY(SELECT id FROM task_group WHERE id = ANY (freed_groups) AND max_running IS NOT NULL);
  END IF;
  IF freed_keys IS NOT NULL THEN
    queued := coalesce(queued, '{}') || ARRAY(SELECT DISTINCT t.group_id FROM task t
                                               WHERE t.state_id = 'AW' AND t.concurrency_key = ANY (freed_keys));
  END IF;
  -- (pg_notify sends a payload once per transaction, however often it is called with it.)
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
