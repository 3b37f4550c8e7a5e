-- Version 26: what a repeating schedule does with the slots it missed (issue 30, item 4). A slot
-- is missed when the fire finds the slot after it due as well: no node fired it in time.
--   once  one run for all of them, next_start to the first slot in the future (the seed's rule,
--         the default, so existing rows keep their behaviour)
--   skip  no run at all; every slot passed counts in shed_skip_count
--   all   with shed_clone: one copy per slot passed, oldest first, up to shed_catchup_max per
--         fire; the slots past the cap count in shed_skip_count. Without shed_clone: as once.
-- The scheduler (a node) works the slots out; nothing here changes what existing rows do.

SET LOCAL search_path TO {{schema}}, pg_catalog;

ALTER TABLE task
  ADD COLUMN shed_missed text NOT NULL DEFAULT 'once'
      CONSTRAINT task_shed_missed_valid CHECK (shed_missed IN ('skip', 'once', 'all')),
  -- 10 000 bounds one fire's insert (each copy is a row) and the node's slot arithmetic.
  ADD COLUMN shed_catchup_max integer NOT NULL DEFAULT 100
      CONSTRAINT task_shed_catchup_max_valid CHECK (shed_catchup_max BETWEEN 1 AND 10000),
  -- The slot a schedule's copy stands for (its process gets it as PG_TASKS_SLOT): with all,
  -- each copy its own. Null on every other task, and on copies made before this version.
  ADD COLUMN shed_slot timestamptz;
