-- Version 24: task.unique_key (issue 30, item 1): at most one unended task per key, as
-- graphile-worker's job_key, pg-boss's singletonKey and River's UniqueOpts do.
--
-- Unended: DR, AW (a task waiting for a retry is AW with run_after), AE and AC. Once the
-- holder ends (CS, CF, CC) the key is free for a new task; re-queuing an ended task takes its
-- key again, and is refused while another task holds it.
--
-- The guarantee is the partial unique index, so that plain SQL can write
--   INSERT ... ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND state_id IN ('DR', 'AW', 'AE', 'AC') DO NOTHING
-- (or DO UPDATE): its WHERE must imply the index's predicate (docs/unique.md). A plain
-- duplicate insert fails with 23505 on task_unique_key, "Key (unique_key)=(K) already
-- exists."; the CLI and the client name the task that holds the key. No trigger raises on a
-- duplicate before the index does: a BEFORE INSERT trigger cannot tell a plain INSERT from
-- one with ON CONFLICT, so it would break ON CONFLICT for everyone.
--
-- task.shed_unique_key: on a clone schedule, the unique_key of each copy, with {{slot}}
-- replaced by the slot's time (UTC, ISO 8601). A copy whose key is held is not made.
--
-- A key is at most 1000 bytes (a btree entry must fit a third of a page), a template 900, so
-- that a slot or two still fit.
--
-- Both columns are NULL on every existing row and by default: nothing changes for them (a
-- unique index lets any number of NULLs in).

SET LOCAL search_path TO {{schema}}, pg_catalog;

ALTER TABLE task
  ADD COLUMN unique_key text CONSTRAINT task_unique_key_valid CHECK (unique_key <> '' AND octet_length(unique_key) <= 1000),
  ADD COLUMN shed_unique_key text CONSTRAINT task_shed_unique_key_valid CHECK (shed_unique_key <> '' AND octet_length(shed_unique_key) <= 900);

-- unique_key IS NOT NULL: a task without a key has no entry. Without it, every write that
-- moves an unended task to a new row version (the claim's, the run's end...: none is HOT,
-- state_id being in the claim indexes' predicates) would add a NULL entry here, for tasks
-- that never use keys. The price: ON CONFLICT's WHERE must name it too.
CREATE UNIQUE INDEX task_unique_key ON task (unique_key) WHERE unique_key IS NOT NULL AND state_id IN ('DR', 'AW', 'AE', 'AC');
