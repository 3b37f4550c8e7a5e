-- The allowlist of migration 14, as the CLI and the client read and write it.

-- name: insertAllowRule
-- $1 group, $2 program, $3 args pattern or null, $4 note or null. The rule's own checks (an
-- absolute program, a pattern that compiles) refuse a bad one with a clear error.
INSERT INTO {{schema}}.task_allowlist (group_id, program, args_pattern, note) VALUES ($1, $2, $3, $4)
RETURNING id, group_id, program, args_pattern, note,
          coalesce((SELECT g.commands FROM {{schema}}.task_group g WHERE g.id = $1), 'any') AS commands;

-- name: listAllowRules
-- $1 group or null: every group's
SELECT r.id, r.group_id, r.program, r.args_pattern, r.note, coalesce(g.commands, 'any') AS commands
  FROM {{schema}}.task_allowlist r
  LEFT JOIN {{schema}}.task_group g ON g.id = r.group_id
 WHERE $1::int IS NULL OR r.group_id = $1
 ORDER BY r.group_id, r.program, r.id;

-- name: deleteAllowRule
-- $1 rule id
DELETE FROM {{schema}}.task_allowlist WHERE id = $1
RETURNING id, group_id, program, args_pattern, note,
          coalesce((SELECT g.commands FROM {{schema}}.task_group g WHERE g.id = group_id), 'any') AS commands;
