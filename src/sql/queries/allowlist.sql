-- The allowlist of migration 14, as the CLI and the client read and write it.

-- name: insertAllowRule
-- The rule's own checks (an absolute program, patterns that compile) refuse a bad one with a
-- clear error. args_patterns and allow_dotdot: migration 20.
INSERT INTO {{schema}}.task_allowlist (group_id, program, args_pattern, args_patterns, allow_dotdot, note)
VALUES (:groupId, :program, :argsPattern, :argsPatterns::text[], :allowDotdot, :note)
RETURNING id, group_id, program, args_pattern, args_patterns, allow_dotdot, note,
          coalesce((SELECT g.commands FROM {{schema}}.task_group g WHERE g.id = :groupId), 'any') AS commands;

-- name: listAllowRules
-- :groupId null: every group's.
SELECT r.id, r.group_id, r.program, r.args_pattern, r.args_patterns, r.allow_dotdot, r.note, coalesce(g.commands, 'any') AS commands
  FROM {{schema}}.task_allowlist r
  LEFT JOIN {{schema}}.task_group g ON g.id = r.group_id
 WHERE :groupId::int IS NULL OR r.group_id = :groupId
 ORDER BY r.group_id, r.program, r.id;

-- name: deleteAllowRule
DELETE FROM {{schema}}.task_allowlist WHERE id = :ruleId
RETURNING id, group_id, program, args_pattern, args_patterns, allow_dotdot, note,
          coalesce((SELECT g.commands FROM {{schema}}.task_group g WHERE g.id = group_id), 'any') AS commands;
