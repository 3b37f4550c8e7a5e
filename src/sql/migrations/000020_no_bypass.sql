-- Version 20: no way around the checks (issue 25). Tables only; the functions that read these
-- columns are in src/sql/functions (task_submit_rules, command_check, command_args_refusal,
-- node_writer), applied right after this migration, in its transaction.
--
-- Who may submit to a group: task_group.submit_roles names the roles whose members may insert a
-- task into the group or move one into it. null: any role that may write task (as before);
-- '{}': none but pg-tasks itself (the node's schedule copies) and admins.
--
-- What arguments a rule allows: args_patterns gives one pattern per position (element i for
-- argument i, the command's element i + 1), beside args_pattern, which then applies to the
-- arguments past the last of them (with no args_pattern, there may be none). allow_dotdot lets
-- the rule's arguments have '..' segments, which its patterns could not see through otherwise
-- (/opt/jobs/../../tmp/x.pl matches ^/opt/jobs/[a-z0-9_/.-]+\.pl$). See docs/security.md.

SET LOCAL search_path TO {{schema}}, pg_catalog;

ALTER TABLE task_group
  ADD COLUMN IF NOT EXISTS submit_roles text[]
      CONSTRAINT task_group_submit_roles_valid CHECK (array_position(submit_roles, NULL) IS NULL);

ALTER TABLE task_allowlist
  ADD COLUMN IF NOT EXISTS args_patterns text[]
      CONSTRAINT task_allowlist_args_patterns_valid CHECK (array_position(args_patterns, NULL) IS NULL),
  ADD COLUMN IF NOT EXISTS allow_dotdot boolean NOT NULL DEFAULT false;
