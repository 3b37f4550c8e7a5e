-- Version 32: a schedule's copies (shed_clone) carry their parent's run_as, limits
-- (memory_max, cpu_seconds_max, open_files_max, pids_max, cpu_max), heartbeat_timeout and
-- concurrency_key (cloneScheduled and fire_slots, changed with this version). Before, a copy
-- took none of them: it ran as its group's user or the node's own (root, for a node running as
-- root with no group run_as), with no limits, outside its key's limit.
-- The copies made before and not yet claimed (DR, AW) get them now; a copy already running
-- keeps what it was claimed with, and ended ones keep their history. A waiting copy whose
-- earlier process may still live (re-queued meanwhile: live_worker_id set) keeps its key, which
-- can't change under a live run (task_limit_rules): it gets the rest.

SET LOCAL search_path TO {{schema}}, pg_catalog;

UPDATE task c
   SET run_as = p.run_as, memory_max = p.memory_max, cpu_seconds_max = p.cpu_seconds_max,
       open_files_max = p.open_files_max, pids_max = p.pids_max, cpu_max = p.cpu_max,
       heartbeat_timeout = p.heartbeat_timeout,
       concurrency_key = CASE WHEN c.live_worker_id IS NULL THEN p.concurrency_key ELSE c.concurrency_key END
  FROM task p
 WHERE c.shed_parent_id = p.id AND c.state_id IN ('DR', 'AW')
   AND (c.run_as, c.memory_max, c.cpu_seconds_max, c.open_files_max, c.pids_max, c.cpu_max, c.heartbeat_timeout, c.concurrency_key)
       IS DISTINCT FROM (p.run_as, p.memory_max, p.cpu_seconds_max, p.open_files_max, p.pids_max, p.cpu_max, p.heartbeat_timeout, p.concurrency_key);
