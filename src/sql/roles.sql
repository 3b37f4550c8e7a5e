-- The privileges of the five group roles (docs/security.md, "Roles"). Not a numbered
-- migration: `pg-tasks migrate` applies it after the migrations, every time, in one
-- transaction under the migration lock, so a table or a column that a later version adds is
-- covered by running migrate again, and what a version no longer grants is taken back.
-- {{schema}} and the role placeholders are quoted identifiers, substituted by src/db/roles.ts.
--
-- Who may do what (each role includes the one before it, but node only includes reader):
--   reader     read every table: tasks, runs, output, workers, groups, limits, schedules
--   submitter  add, queue and cancel tasks: INSERT and UPDATE of the columns a user writes
--   operator   + worker stop codes (worker.stop) and schedules (next_start, shed_*)
--   admin      everything in the schema: groups, limits, allowlists, the recover policy
--   node       what a node writes: claims, pids, ends, runs, output, leases, schedules
--              firing (clones and advances), retention deletes, the maintenance row

SET LOCAL search_path TO {{schema}}, pg_catalog;

-- Start from nothing, so that a grant dropped from this file is taken back on the next run.
REVOKE ALL ON ALL TABLES IN SCHEMA {{schema}} FROM {{reader}}, {{submitter}}, {{operator}}, {{admin}}, {{node}};
REVOKE ALL ON ALL SEQUENCES IN SCHEMA {{schema}} FROM {{reader}}, {{submitter}}, {{operator}}, {{admin}}, {{node}};
-- Column grants are separate from table grants: REVOKE ALL on the table does not remove them.
REVOKE INSERT (params, state_id, priority, group_id, worker_id, command, cwd, recover_policy, timeout,
               max_attempts, backoff_base, backoff_cap, retry_on, run_after, depends_on, concurrency_key,
               run_as, memory_max, cpu_seconds_max, open_files_max, pids_max, cpu_max,
               next_start, shed_period_id, shed_period_count, shed_cron, shed_tz, shed_clone, shed_overlap),
       UPDATE (params, state_id, priority, group_id, worker_id, command, cwd, recover_policy, timeout,
               max_attempts, backoff_base, backoff_cap, retry_on, run_after, depends_on, concurrency_key,
               run_as, memory_max, cpu_seconds_max, open_files_max, pids_max, cpu_max,
               next_start, shed_period_id, shed_period_count, shed_cron, shed_tz, shed_clone, shed_overlap)
  ON task FROM {{submitter}}, {{operator}};
REVOKE UPDATE (stop) ON worker FROM {{operator}};
REVOKE CREATE ON SCHEMA {{schema}} FROM {{admin}};

GRANT USAGE ON SCHEMA {{schema}} TO {{reader}}, {{submitter}}, {{operator}}, {{admin}}, {{node}};

-- reader: every table, including the ones later versions add.
GRANT SELECT ON ALL TABLES IN SCHEMA {{schema}} TO {{reader}};

-- submitter: the task columns a user writes (pg-tasks add and queue, the seed's INSERT). Not
-- the columns the node keeps (attempt, lease_epoch, live_worker_id, pid, exit_*, deps_left...),
-- which the lifecycle triggers and the claim rely on, and not the schedule columns.
GRANT INSERT (params, state_id, priority, group_id, worker_id, command, cwd, recover_policy, timeout,
              max_attempts, backoff_base, backoff_cap, retry_on, run_after, depends_on, concurrency_key,
              run_as, memory_max, cpu_seconds_max, open_files_max, pids_max, cpu_max),
      UPDATE (params, state_id, priority, group_id, worker_id, command, cwd, recover_policy, timeout,
              max_attempts, backoff_base, backoff_cap, retry_on, run_after, depends_on, concurrency_key,
              run_as, memory_max, cpu_seconds_max, open_files_max, pids_max, cpu_max)
  ON task TO {{submitter}};
GRANT USAGE ON SEQUENCE task_id_seq TO {{submitter}};

-- operator: worker stop codes and schedules.
GRANT UPDATE (stop) ON worker TO {{operator}};
GRANT INSERT (next_start, shed_period_id, shed_period_count, shed_cron, shed_tz, shed_clone, shed_overlap),
      UPDATE (next_start, shed_period_id, shed_period_count, shed_cron, shed_tz, shed_clone, shed_overlap)
  ON task TO {{operator}};

-- admin: everything on the schema's tables and sequences, and CREATE so that it may replace
-- the recover policy (recover_worker_tasks, which src/db/roles.ts makes it own).
GRANT ALL ON ALL TABLES IN SCHEMA {{schema}} TO {{admin}};
GRANT ALL ON ALL SEQUENCES IN SCHEMA {{schema}} TO {{admin}};
GRANT CREATE ON SCHEMA {{schema}} TO {{admin}};

-- node: the claim and the run's end (task, task_run), pids, cancellations and recovery
-- (task), live output (task_output: insert, trim), leases and standby stamps (worker: insert
-- its row, update; never delete), schedules firing (task: insert clones, update), retention
-- (delete from task and task_run; the maintenance row). Not task_group, concurrency_limit or
-- task_allowlist: what may run and how much is the admin's to say, not the node's.
GRANT INSERT, UPDATE, DELETE ON task, task_run TO {{node}};
GRANT INSERT, DELETE ON task_output TO {{node}};
GRANT INSERT, UPDATE ON worker TO {{node}};
GRANT UPDATE ON maintenance TO {{node}};
GRANT USAGE ON SEQUENCE task_id_seq TO {{node}};

-- A trigger function runs with the privileges of whoever wrote the row that fired it. Four
-- write rows the writer may not: a dependency's end releases its dependents (deps_left, and
-- state CF 'dependency'), an overlap's end queues the waiting copy, a task's delete deletes
-- its runs and output. They run as their owner instead: task_deps_release,
-- task_overlap_release, task_delete_runs and task_run_delete_output are SECURITY DEFINER in
-- their files (src/sql/functions), which is safe because: a trigger function cannot be called
-- except by its trigger, so a user only reaches it through a write they may make; each does
-- only its fixed bookkeeping on the rows that write touched; and its search_path is fixed,
-- with pg_temp last, so no temporary or other schema's object can stand in for a table it
-- names. (Migrations up to 16 set this here, after every CREATE OR REPLACE that reset it.)
