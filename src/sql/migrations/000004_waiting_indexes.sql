-- Version 4: the claim stays fast whatever waits for other workers.
-- One index over (group, priority, age) of all waiting tasks made a claim read through every
-- task pinned to another worker before it found one it may run: with 1 000 000 tasks pinned
-- to a worker that is down, each claim (and each lease renewal's "work waiting?") read the
-- million rows, about 200 ms (bench/backlog.ts). Now the tasks any worker may run and the
-- tasks pinned to a worker have an index each, and the claim reads the head of both.

SET LOCAL search_path TO {{schema}}, pg_catalog;

DROP INDEX IF EXISTS task_waiting_idx;
CREATE INDEX IF NOT EXISTS task_waiting_any_idx ON task (group_id, priority, last_state_change, id)
  WHERE state_id = 'AW' AND worker_id IS NULL;
CREATE INDEX IF NOT EXISTS task_waiting_pinned_idx ON task (worker_id, group_id, priority, last_state_change, id)
  WHERE state_id = 'AW' AND worker_id IS NOT NULL;
