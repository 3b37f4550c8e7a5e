-- Version 19: bounded input, and one bad row never blocks others (issue 25).
--
-- A run whose result the database refuses (its batch fails, and the row still fails alone
-- when the node splits the batch) ends CF with end_reason 'result_rejected' and the
-- database's error, so the other runs of its batch are written and the node does not retry
-- for ever. Not in retry_on's set: the run is over, and the same write would fail again.
--
-- The function files changed with this version (src/sql/functions): task_bounds, new, refuses
-- an oversized depends_on, command, params or cwd, and a chain of prerequisites deeper than
-- 1 000; task_deps_release walks a cancel down the graph in a loop instead of one nested
-- trigger per level (a chain 1 000 deep exhausted the stack). Older nodes refuse this schema.

SET LOCAL search_path TO {{schema}}, pg_catalog;

ALTER TABLE task
  DROP CONSTRAINT task_end_reason_valid,
  ADD CONSTRAINT task_end_reason_valid CHECK (end_reason IN (
    'completed', 'exit_code', 'signal', 'spawn_error', 'cancelled', 'timeout',
    'worker_failed', 'lost', 'node_stopped', 'dependency', 'refused', 'oom', 'result_rejected'));

ALTER TABLE task_run
  DROP CONSTRAINT task_run_end_reason_valid,
  ADD CONSTRAINT task_run_end_reason_valid CHECK (end_reason IN (
    'completed', 'exit_code', 'signal', 'spawn_error', 'cancelled', 'timeout',
    'worker_failed', 'lost', 'node_stopped', 'dependency', 'refused', 'oom', 'result_rejected'));
