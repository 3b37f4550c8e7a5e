-- Version 33: the claim reads the head of its waiting index again, whatever the statistics say.
--
-- Version 29 added task_group_state_idx (group_id, state_id) for the dashboard's counts. The
-- claim's WHERE (state_id = 'AW' AND group_id = …) matches it too, and where the statistics do
-- not know the waiting tasks (a burst into a table never analyzed, or one analyzed while few
-- tasks waited: autovacuum analyzes a large table only after a tenth of it changed), the planner
-- estimates a handful of rows and takes it: every waiting task of the group read and sorted
-- for each claim, instead of the first few rows of task_waiting_any_idx. Measured on a
-- 2-core machine, a fresh schema with 50 000 tasks inserted at once: 61 ms a claim through
-- task_group_state_idx against 4.4 ms through task_waiting_any_idx; the bulk pickup bench
-- fell from 1 199 tasks/s (before version 29) to 698.
--
-- Without it the dashboard counts tasks per group and state from the table (a parallel
-- sequential scan: 170 ms at 1 000 000 tasks where the index took 80, docs/dashboard.md). A
-- page of the dashboard may take that; every claim of every node may not.

SET LOCAL search_path TO {{schema}}, pg_catalog;

DROP INDEX IF EXISTS task_group_state_idx;
