-- Version 13: what a node may run, as whom, with what environment and how much (issue 13).
-- The columns here; the rules that read them are in the migrations that follow and in the
-- node (see docs/security.md).

SET LOCAL search_path TO {{schema}}, pg_catalog;

-- What may run. A group whose commands = 'allowlist' runs only programs that a row of
-- task_allowlist allows for it (checked when a task is written, and by the node before it
-- spawns); a node started with --commands allowlist checks every group it serves that way.
ALTER TABLE task_group
  ADD COLUMN IF NOT EXISTS commands text NOT NULL DEFAULT 'any'
      CONSTRAINT task_group_commands_valid CHECK (commands IN ('any', 'allowlist'));

-- One rule: the program, by absolute path ('/usr/bin/rsync'), or every program under a
-- directory (a path ending in '/': '/opt/jobs/'); with args_pattern, every argument must
-- match it (a regular expression, anchored by whoever writes it).
CREATE TABLE IF NOT EXISTS task_allowlist (
  id           serial PRIMARY KEY,
  group_id     int  NOT NULL,
  program      text NOT NULL
               CONSTRAINT task_allowlist_program_absolute CHECK (program ~ '^/' AND program !~ '(^|/)\.\.?(/|$)' AND program !~ '//'),
  args_pattern text,
  note         text
);
CREATE INDEX IF NOT EXISTS task_allowlist_group_idx ON task_allowlist (group_id);

-- As whom: 'user' or 'user:group' (names or numeric ids), for a node that runs as root and
-- allows it (--allow-run-as). The task's wins over its group's; null: the node's own user.
ALTER TABLE task
  ADD COLUMN IF NOT EXISTS run_as text CONSTRAINT task_run_as_valid CHECK (run_as ~ '^[A-Za-z0-9_][A-Za-z0-9_.-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?$');
ALTER TABLE task_group
  ADD COLUMN IF NOT EXISTS run_as text CONSTRAINT task_group_run_as_valid CHECK (run_as ~ '^[A-Za-z0-9_][A-Za-z0-9_.-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?$');

-- With what environment, beyond the clean default: the node's variables named in pass_env,
-- and the fixed values in env (an object of strings).
ALTER TABLE task_group
  ADD COLUMN IF NOT EXISTS pass_env text[]
      CONSTRAINT task_group_pass_env_valid CHECK (array_position(pass_env, NULL) IS NULL),
  ADD COLUMN IF NOT EXISTS env jsonb
      CONSTRAINT task_group_env_object CHECK (jsonb_typeof(env) = 'object');

-- With how much. Each on the task, else its group's; null: no limit.
--   memory_max       bytes of memory (RLIMIT_AS; the cgroup's memory.max where delegated)
--   cpu_seconds_max  seconds of CPU time (RLIMIT_CPU)
--   open_files_max   open file descriptors (RLIMIT_NOFILE)
--   pids_max         processes (the cgroup's pids.max; else RLIMIT_NPROC, which counts
--                    every process of the user the task runs as)
--   cpu_max          CPUs' worth of time per period (the cgroup's cpu.max; 0.5 = half a CPU)
ALTER TABLE task
  ADD COLUMN IF NOT EXISTS memory_max bigint CONSTRAINT task_memory_max_positive CHECK (memory_max > 0),
  ADD COLUMN IF NOT EXISTS cpu_seconds_max int CONSTRAINT task_cpu_seconds_max_positive CHECK (cpu_seconds_max > 0),
  ADD COLUMN IF NOT EXISTS open_files_max int CONSTRAINT task_open_files_max_positive CHECK (open_files_max > 0),
  ADD COLUMN IF NOT EXISTS pids_max int CONSTRAINT task_pids_max_positive CHECK (pids_max > 0),
  ADD COLUMN IF NOT EXISTS cpu_max numeric CONSTRAINT task_cpu_max_positive CHECK (cpu_max > 0);
ALTER TABLE task_group
  ADD COLUMN IF NOT EXISTS memory_max bigint CONSTRAINT task_group_memory_max_positive CHECK (memory_max > 0),
  ADD COLUMN IF NOT EXISTS cpu_seconds_max int CONSTRAINT task_group_cpu_seconds_max_positive CHECK (cpu_seconds_max > 0),
  ADD COLUMN IF NOT EXISTS open_files_max int CONSTRAINT task_group_open_files_max_positive CHECK (open_files_max > 0),
  ADD COLUMN IF NOT EXISTS pids_max int CONSTRAINT task_group_pids_max_positive CHECK (pids_max > 0),
  ADD COLUMN IF NOT EXISTS cpu_max numeric CONSTRAINT task_group_cpu_max_positive CHECK (cpu_max > 0);

-- What a run used, where the node can tell: the peak memory of its cgroup (bytes).
ALTER TABLE task_run
  ADD COLUMN IF NOT EXISTS memory_peak bigint;
