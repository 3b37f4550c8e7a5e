-- The privileges of the five group roles (docs/security.md, "Roles"). Not a numbered
-- migration: `pg-tasks migrate` applies it after the migrations, every time, in one
-- transaction under the migration lock, so a table or a column that a later version adds is
-- covered by running migrate again, and what a version no longer grants is taken back.
-- {{schema}} and the role placeholders are quoted identifiers, substituted by src/db/roles.ts.
--
-- Who may do what (operator includes submitter, admin includes operator, node includes reader):
--   reader     read every table: tasks, runs, output, workers, groups, limits, schedules
--   submitter  read every table, but only its own tasks, their runs and output (row-level
--              security, below); add, queue and cancel its own tasks: INSERT and UPDATE of
--              the columns a user writes. Not a member of reader: that would show it all.
--   operator   + every task, run and output, worker stop codes (worker.stop) and schedules
--              (next_start, shed_*)
--   admin      everything in the schema: groups, limits, allowlists, the recover policy
--   node       what a node writes, for every task: claims, pids, ends, runs, output, leases,
--              schedules firing (clones and advances), retention deletes, the maintenance row

SET LOCAL search_path TO {{schema}}, pg_catalog;

-- Start from nothing, so that a grant dropped from this file is taken back on the next run.
REVOKE ALL ON ALL TABLES IN SCHEMA {{schema}} FROM {{reader}}, {{submitter}}, {{operator}}, {{admin}}, {{node}};
REVOKE ALL ON ALL SEQUENCES IN SCHEMA {{schema}} FROM {{reader}}, {{submitter}}, {{operator}}, {{admin}}, {{node}};
-- Column grants are separate from table grants: REVOKE ALL on the table does not remove them.
REVOKE INSERT (params, state_id, priority, group_id, worker_id, command, cwd, recover_policy, timeout,
               max_attempts, backoff_base, backoff_cap, retry_on, run_after, depends_on, concurrency_key,
               run_as, memory_max, cpu_seconds_max, open_files_max, pids_max, cpu_max, owner,
               next_start, shed_period_id, shed_period_count, shed_cron, shed_tz, shed_clone, shed_overlap, shed_missed, shed_catchup_max),
       UPDATE (params, state_id, priority, group_id, worker_id, command, cwd, recover_policy, timeout,
               max_attempts, backoff_base, backoff_cap, retry_on, run_after, depends_on, concurrency_key,
               run_as, memory_max, cpu_seconds_max, open_files_max, pids_max, cpu_max, owner,
               next_start, shed_period_id, shed_period_count, shed_cron, shed_tz, shed_clone, shed_overlap, shed_missed, shed_catchup_max)
  ON task FROM {{submitter}}, {{operator}};
REVOKE INSERT (depends_rule), UPDATE (depends_rule) ON task FROM {{submitter}}, {{operator}};
REVOKE UPDATE (stop) ON worker FROM {{operator}};
REVOKE CREATE ON SCHEMA {{schema}} FROM {{admin}};

GRANT USAGE ON SCHEMA {{schema}} TO {{reader}}, {{submitter}}, {{operator}}, {{admin}}, {{node}};

-- reader: every table, including the ones later versions add. submitter too (it is not a
-- member of reader): of task, task_run and task_output, row-level security shows it its own.
GRANT SELECT ON ALL TABLES IN SCHEMA {{schema}} TO {{reader}}, {{submitter}};

-- submitter: the task columns a user writes (pg-tasks add and queue, the seed's INSERT). Not
-- the columns the node keeps (attempt, lease_epoch, live_worker_id, pid, exit_*, deps_left...),
-- which the lifecycle triggers and the claim rely on, and not the schedule columns. owner:
-- so that writing it meets task_owner_rules' one-line refusal (anything but itself), not a
-- bare "permission denied".
GRANT INSERT (params, state_id, priority, group_id, worker_id, command, cwd, recover_policy, timeout,
              max_attempts, backoff_base, backoff_cap, retry_on, run_after, depends_on, concurrency_key,
              run_as, memory_max, cpu_seconds_max, open_files_max, pids_max, cpu_max, owner),
      UPDATE (params, state_id, priority, group_id, worker_id, command, cwd, recover_policy, timeout,
              max_attempts, backoff_base, backoff_cap, retry_on, run_after, depends_on, concurrency_key,
              run_as, memory_max, cpu_seconds_max, open_files_max, pids_max, cpu_max, owner)
  ON task TO {{submitter}};
GRANT INSERT (depends_rule), UPDATE (depends_rule) ON task TO {{submitter}};
GRANT USAGE ON SEQUENCE task_id_seq TO {{submitter}};

-- operator: worker stop codes and schedules.
GRANT UPDATE (stop) ON worker TO {{operator}};
GRANT INSERT (next_start, shed_period_id, shed_period_count, shed_cron, shed_tz, shed_clone, shed_overlap, shed_missed, shed_catchup_max),
      UPDATE (next_start, shed_period_id, shed_period_count, shed_cron, shed_tz, shed_clone, shed_overlap, shed_missed, shed_catchup_max)
  ON task TO {{operator}};

-- unique_key (migration 24): the submitter writes a task's key; shed_unique_key, a clone
-- schedule's key template, is a schedule column. Revoked first, like the columns above.
REVOKE INSERT (unique_key, shed_unique_key), UPDATE (unique_key, shed_unique_key) ON task FROM {{submitter}}, {{operator}};
GRANT INSERT (unique_key), UPDATE (unique_key) ON task TO {{submitter}};
GRANT INSERT (shed_unique_key), UPDATE (shed_unique_key) ON task TO {{operator}};

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
-- (The starts a key's rate counts, migration 27: recorded and pruned by the claim.)
GRANT INSERT, DELETE ON concurrency_start TO {{node}};
GRANT INSERT, UPDATE ON worker TO {{node}};
GRANT UPDATE ON maintenance TO {{node}};
GRANT USAGE ON SEQUENCE task_id_seq TO {{node}};

-- Owners (migration 21; docs/security.md, "Owners"). Row-level security on the tasks, their
-- runs and their output: a user sees and changes the tasks it owns (task_own, for every user:
-- its table privileges still decide what it may do at all); operators, admins and nodes all
-- of them (task_all; task_owner_rules lets exactly these give a task to another owner);
-- readers read all (task_read). Policies add up (permissive). The tables' owner and
-- superusers bypass them (not FORCEd: the migrator and the SECURITY DEFINER trigger
-- functions, which run as the owner, see every row). Enabled here, with the roles: without
-- the roles there is nobody to tell apart, and everyone with table privileges sees all, as
-- before. Re-created on every run, for the role names of this prefix.
ALTER TABLE task ENABLE ROW LEVEL SECURITY;
ALTER TABLE task_run ENABLE ROW LEVEL SECURITY;
ALTER TABLE task_output ENABLE ROW LEVEL SECURITY;

DROP POLICY IF EXISTS task_own ON task;
CREATE POLICY task_own ON task USING (owner = current_user) WITH CHECK (owner = current_user);
DROP POLICY IF EXISTS task_all ON task;
CREATE POLICY task_all ON task TO {{operator}}, {{node}} USING (true) WITH CHECK (true);
DROP POLICY IF EXISTS task_read ON task;
CREATE POLICY task_read ON task FOR SELECT TO {{reader}} USING (true);

-- A run or its output is the task's owner's to read (only nodes and admins write them): the
-- subquery finds the user's own tasks through task_owner_idx.
DROP POLICY IF EXISTS task_run_own ON task_run;
CREATE POLICY task_run_own ON task_run FOR SELECT
  USING (EXISTS (SELECT 1 FROM task t WHERE t.id = task_run.task_id AND t.owner = current_user));
DROP POLICY IF EXISTS task_run_all ON task_run;
CREATE POLICY task_run_all ON task_run TO {{operator}}, {{node}} USING (true) WITH CHECK (true);
DROP POLICY IF EXISTS task_run_read ON task_run;
CREATE POLICY task_run_read ON task_run FOR SELECT TO {{reader}} USING (true);

DROP POLICY IF EXISTS task_output_own ON task_output;
CREATE POLICY task_output_own ON task_output FOR SELECT
  USING (EXISTS (SELECT 1 FROM task t WHERE t.id = task_output.task_id AND t.owner = current_user));
DROP POLICY IF EXISTS task_output_all ON task_output;
CREATE POLICY task_output_all ON task_output TO {{operator}}, {{node}} USING (true) WITH CHECK (true);
DROP POLICY IF EXISTS task_output_read ON task_output;
CREATE POLICY task_output_read ON task_output FOR SELECT TO {{reader}} USING (true);

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
