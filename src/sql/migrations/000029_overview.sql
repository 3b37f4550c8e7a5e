-- Version 29: indexes for the dashboard's overview (issue 31): counts per group and state,
-- runs started and ended per minute and per hour, durations per group and command.
-- Measured at 1 000 000 tasks and 1 000 000 runs, PostgreSQL 15, a loaded 2-core machine
-- (docs/dashboard.md "Overview"):
--   task_group_state_idx   the counts by an index-only scan of a 21 MB index instead of the
--                          220 MB table: 170 ms → 80 ms. (state_id is already in the
--                          predicates of other indexes, so a state change was never a HOT
--                          update: this costs it one more index entry.)
--   task_run_started_idx   runs started in a window (lost claims left out: no process
--                          started), counted from the index alone. A run's row is written
--                          once, at its end: it is never a HOT update to lose.
--   task_run_finished_idx  now carries started and end_reason, so the runs ended in a window,
--                          their outcome and their duration are read from the index alone;
--                          the key (finished, task_id, attempt) is retention's, unchanged.

SET LOCAL search_path TO {{schema}}, pg_catalog;

CREATE INDEX IF NOT EXISTS task_group_state_idx ON task (group_id, state_id);
CREATE INDEX IF NOT EXISTS task_run_started_idx ON task_run (started) INCLUDE (end_reason);
DROP INDEX IF EXISTS task_run_finished_idx;
CREATE INDEX task_run_finished_idx ON task_run (finished, task_id, attempt) INCLUDE (started, end_reason);
