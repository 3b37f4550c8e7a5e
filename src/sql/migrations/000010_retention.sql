-- Version 10: retention, kept by the nodes. Per group (a group with no task_group row takes
-- the defaults):
--   keep_ended  ended tasks (CS, CF, CC; scheduled copies too) are deleted, with their runs,
--               this long after they ended. Null (the default): kept, as the seed's users
--               expect their rows to stay unless they ask.
--   keep_runs   older runs of the tasks that stay (a task run again and again: a schedule
--               without copies, retries) are deleted this long after they ended; a task's
--               latest run is always kept. Default 30 days; null: kept.
-- What is never deleted, whatever its age: a schedule, a task whose process may still live,
-- and a prerequisite a waiting or draft task still names.
--
-- One node at a time, cluster-wide, runs a pass: the node that moves the 'retention' row's
-- next_at forward (an UPDATE only one can win) deletes in small batches, each its own short
-- statement that skips rows others hold.

SET LOCAL search_path TO {{schema}}, pg_catalog;

ALTER TABLE task_group
  ADD COLUMN IF NOT EXISTS keep_ended interval CONSTRAINT task_group_keep_ended_positive CHECK (keep_ended > interval '0'),
  ADD COLUMN IF NOT EXISTS keep_runs interval DEFAULT interval '30 days'
      CONSTRAINT task_group_keep_runs_positive CHECK (keep_runs > interval '0');

CREATE TABLE IF NOT EXISTS maintenance (
  name          text PRIMARY KEY,
  -- A node starts a pass once now() has passed it, and moves it forward as it does.
  next_at       timestamptz NOT NULL DEFAULT now(),
  node_name     text,
  last_started  timestamptz,
  last_finished timestamptz,
  -- What the last finished pass deleted.
  last_tasks    bigint,
  last_runs     bigint,
  -- Where the scan of task_run by age stopped (finished, task_id, attempt): the next pass goes
  -- on from there, instead of reading again the runs it had to keep (a task's latest run).
  runs_cursor_finished timestamptz,
  runs_cursor_task     bigint,
  runs_cursor_attempt  int,
  -- Runs that ended since then may have made older runs behind the cursor prunable (their
  -- task ran again): the start of the last finished pass, less a margin.
  rerun_since          timestamptz
);
INSERT INTO maintenance (name) VALUES ('retention') ON CONFLICT (name) DO NOTHING;

-- Ended tasks by group and age, and runs by age: a pass reads the oldest first and stops at
-- its cutoff, whatever the size of the tables. (The ended tasks' index costs each run's end
-- one index entry.)
CREATE INDEX IF NOT EXISTS task_ended_idx ON task (group_id, (coalesce(finished, last_state_change)))
  WHERE state_id IN ('CS', 'CF', 'CC');
CREATE INDEX IF NOT EXISTS task_run_finished_idx ON task_run (finished, task_id, attempt);

-- A deleted task's runs go with it. Version 5 joined the deleted rows (a transition table,
-- which has no statistics) to task_run: a hash join over the whole of task_run, 80 ms for a
-- batch of 1 000 tasks with 200 000 runs in the table, seconds with millions. Looked up by
-- the primary key instead.
CREATE OR REPLACE FUNCTION task_delete_runs() RETURNS trigger
LANGUAGE plpgsql
SET search_path = {{schema}}, pg_catalog
AS $$
BEGIN
  DELETE FROM task_run r WHERE r.task_id = ANY (ARRAY(SELECT id FROM old_rows));
  RETURN NULL;
END;
$$;

-- Whether a waiting or draft task names the task as a prerequisite, read in a snapshot of its
-- own (a volatile function's): a prune checks it after locking the row, so a dependent that
-- committed since the prune's statement began is seen, and its prerequisite kept.
CREATE OR REPLACE FUNCTION is_named_prerequisite(p_id bigint) RETURNS boolean
LANGUAGE sql VOLATILE
SET search_path = {{schema}}, pg_catalog
AS $$
  SELECT EXISTS (SELECT 1 FROM task d WHERE d.depends_on @> ARRAY[p_id] AND d.depends_on IS NOT NULL AND d.state_id IN ('AW', 'DR'));
$$;
