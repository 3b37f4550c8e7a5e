-- Version 21: every task has an owner (issue 25: any submitter could change any task).
--
-- task.owner is the role that inserted the row: current_user, by default. Only a user who sees
-- and changes every task (an operator, an admin, a node: the task_all policy of
-- src/sql/roles.sql) may write another (task_owner_rules refuses anyone else with one line);
-- a scheduled copy keeps its parent's owner. Row-level security, enabled with the roles'
-- policies by src/sql/roles.sql, shows a submitter only the tasks it owns, their runs and
-- their output.
--
-- Rows written before this version have no owner (NULL): nobody in particular. Operators,
-- admins, readers and nodes see them as before; no submitter does. An operator gives one
-- away with UPDATE ... SET owner = 'alice'. (Who inserted an old row is not recorded
-- anywhere, and guessing the schema's owner would hand every old task to one role.)

SET LOCAL search_path TO {{schema}}, pg_catalog;

-- Added without a default first, so that the existing rows stay NULL; then the default for
-- new rows. Collation "C", the collation of role names (type name): the policies compare it
-- with current_user, and only in the same collation can that comparison use the index.
ALTER TABLE task ADD COLUMN owner text COLLATE "C";
ALTER TABLE task ALTER COLUMN owner SET DEFAULT current_user;

-- Every read a submitter makes of task is filtered by owner = current_user.
CREATE INDEX task_owner_idx ON task (owner);
