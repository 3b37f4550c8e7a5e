-- Version 30: every task's dependents by index, ended or not (issue 31, the dashboard's
-- dependency graph).
--
-- task_dependents_idx (migration 7) holds only the tasks still waiting (AW, DR): the release's
-- recount needs no more. The graph of a DAG that ran also walks down to dependents that ended
-- (a failure's CC 'dependency' chain), and without an index each step of that walk reads the
-- whole table (a 1 000 000-row scan per level). This GIN index holds only the tasks that have
-- a depends_on, so a task without dependencies pays nothing on insert or update.
--
-- The task pages' runs, newest first and paged by attempt, need no index of their own: the
-- primary key (task_id, attempt) is read backwards.

SET LOCAL search_path TO {{schema}}, pg_catalog;

CREATE INDEX task_depends_on_idx ON task USING gin (depends_on) WHERE depends_on IS NOT NULL;
