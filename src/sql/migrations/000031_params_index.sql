-- Version 31: the dashboard's params filter (issue 31): the task list and its bulk actions
-- find tasks by a JSON containment query, params @> '{"customer": 42}'. jsonb_path_ops keeps
-- one hash per path to a value, so the index is smaller than the default jsonb_ops and
-- answers exactly @> (the only operator the dashboard uses); without it, a filter on
-- 1 000 000 tasks reads the whole table.

SET LOCAL search_path TO {{schema}}, pg_catalog;

CREATE INDEX IF NOT EXISTS task_params_idx ON task USING gin (params jsonb_path_ops);
