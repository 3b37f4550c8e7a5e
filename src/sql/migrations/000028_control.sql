-- Version 28: the task's own channel on fd 3 (issue 29, docs/control.md).
--   task.progress, .progress_message   the live run's last progress (0..1) and status line,
--                                      written by the node (at most one write per run per
--                                      200 ms); the run's end carries the last values
--   task.result                        the JSON a run reported as {"result": …} (at most 64 kB)
--   task_run.progress, .progress_message, .result   the same, kept per run
--   task_run.control_errors            lines on fd 3 the node could not use (bad JSON, unknown
--                                      key, over 64 kB): counted, never fatal
--   task.heartbeat_timeout, task_group.heartbeat_timeout   a run silent on fd 3 that long is
--                                      killed and ends CF 'heartbeat' (null: none; the
--                                      task's own, else its group's)
-- 'heartbeat' is a new end_reason, allowed in retry_on, and in retry_on's default
-- (retry_delay). Entering AW clears progress, progress_message and result with error
-- (task_before_update): the task row shows its latest run only. Older nodes refuse this schema.

SET LOCAL search_path TO {{schema}}, pg_catalog;

ALTER TABLE task
  ADD COLUMN IF NOT EXISTS progress real,
  ADD COLUMN IF NOT EXISTS progress_message text,
  ADD COLUMN IF NOT EXISTS result jsonb,
  ADD COLUMN IF NOT EXISTS heartbeat_timeout interval,
  DROP CONSTRAINT IF EXISTS task_progress_valid,
  ADD CONSTRAINT task_progress_valid CHECK (progress >= 0 AND progress <= 1),
  DROP CONSTRAINT IF EXISTS task_heartbeat_timeout_positive,
  ADD CONSTRAINT task_heartbeat_timeout_positive CHECK (heartbeat_timeout > interval '0'),
  DROP CONSTRAINT IF EXISTS task_end_reason_valid,
  ADD CONSTRAINT task_end_reason_valid CHECK (end_reason IN (
    'completed', 'exit_code', 'signal', 'spawn_error', 'cancelled', 'timeout',
    'worker_failed', 'lost', 'node_stopped', 'dependency', 'refused', 'oom', 'result_rejected', 'lost_claim', 'heartbeat')),
  DROP CONSTRAINT IF EXISTS task_retry_on_valid,
  ADD CONSTRAINT task_retry_on_valid CHECK (retry_on <@ ARRAY['exit_code', 'signal', 'spawn_error', 'timeout', 'worker_failed', 'lost', 'oom', 'heartbeat']);

ALTER TABLE task_group
  ADD COLUMN IF NOT EXISTS heartbeat_timeout interval,
  DROP CONSTRAINT IF EXISTS task_group_heartbeat_timeout_positive,
  ADD CONSTRAINT task_group_heartbeat_timeout_positive CHECK (heartbeat_timeout > interval '0'),
  DROP CONSTRAINT IF EXISTS task_group_retry_on_valid,
  ADD CONSTRAINT task_group_retry_on_valid CHECK (retry_on <@ ARRAY['exit_code', 'signal', 'spawn_error', 'timeout', 'worker_failed', 'lost', 'oom', 'heartbeat']);

ALTER TABLE task_run
  ADD COLUMN IF NOT EXISTS progress real,
  ADD COLUMN IF NOT EXISTS progress_message text,
  ADD COLUMN IF NOT EXISTS result jsonb,
  ADD COLUMN IF NOT EXISTS control_errors int,
  DROP CONSTRAINT IF EXISTS task_run_end_reason_valid,
  ADD CONSTRAINT task_run_end_reason_valid CHECK (end_reason IN (
    'completed', 'exit_code', 'signal', 'spawn_error', 'cancelled', 'timeout',
    'worker_failed', 'lost', 'node_stopped', 'dependency', 'refused', 'oom', 'result_rejected', 'lost_claim', 'heartbeat'));
