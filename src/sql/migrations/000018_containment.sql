-- Version 18: a run owns every process it starts (docs/lifecycle.md, "A run's processes").
-- Its supervisor kills the processes that left the leader's process group (setsid, a daemon)
-- or outlived the leader past --orphan-grace, and the run records how many. The trigger
-- task_before_update (its file) now turns a user's AE -> CC into a cancel (AC).

SET LOCAL search_path TO {{schema}}, pg_catalog;

-- null: the run had no supervisor (--containment group, or child_process.spawn).
ALTER TABLE task_run ADD COLUMN orphans_killed integer;
