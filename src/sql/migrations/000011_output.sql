-- Version 11: live output. What a run's process writes (stdout and stderr, interleaved as it
-- came) reaches task_output while the run lives, in chunks written by the node in batches
-- (one statement per flush for all its runs, a few flushes a second at most). The node keeps
-- at most its --output-keep bytes per run: older chunks of a run that prints more are deleted
-- as new ones land, so a reader sees the latest bytes, and `pos` says how many came before.
-- A run's chunks go with its task_run row (retention's keep_runs) and with its task.

SET LOCAL search_path TO {{schema}}, pg_catalog;

CREATE TABLE IF NOT EXISTS task_output (
  task_id bigint      NOT NULL,
  attempt int         NOT NULL,
  -- 0, 1, 2 … in the order the node read them
  seq     int         NOT NULL,
  -- byte offset of the chunk's first byte in the run's whole output
  pos     bigint      NOT NULL,
  at      timestamptz NOT NULL DEFAULT now(),
  -- raw bytes: a chunk may end inside a UTF-8 character
  data    bytea       NOT NULL,
  PRIMARY KEY (task_id, attempt, seq)
);

-- Deleting tasks deletes their runs (task_delete_runs) and their output, a live run's too.
CREATE OR REPLACE FUNCTION task_delete_runs() RETURNS trigger
LANGUAGE plpgsql
SET search_path = {{schema}}, pg_catalog
AS $$
BEGIN
  DELETE FROM task_run r WHERE r.task_id = ANY (ARRAY(SELECT id FROM old_rows));
  DELETE FROM task_output o WHERE o.task_id = ANY (ARRAY(SELECT id FROM old_rows));
  RETURN NULL;
END;
$$;

-- Deleting runs (retention's keep_runs) deletes their output.
CREATE OR REPLACE FUNCTION task_run_delete_output() RETURNS trigger
LANGUAGE plpgsql
SET search_path = {{schema}}, pg_catalog
AS $$
BEGIN
  DELETE FROM task_output o USING old_rows r WHERE o.task_id = r.task_id AND o.attempt = r.attempt;
  RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS task_run_delete_output ON task_run;
CREATE TRIGGER task_run_delete_output AFTER DELETE ON task_run
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION task_run_delete_output();
