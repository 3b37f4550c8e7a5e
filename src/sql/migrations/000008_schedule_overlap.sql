-- Version 8: what a cloned schedule does when a slot comes while an earlier copy has not ended.
--   allow            a new copy, whatever runs (as before: the default)
--   skip             no copy this slot; counted in shed_skip_count, as a non-cloned schedule does
--   queue            one copy waits (in DR) for the earlier ones to end, then is queued; a slot
--                    that finds one already waiting is skipped (counted)
--   cancel_previous  the earlier copies are cancelled, and the new one is queued once they have
--                    ended (their processes gone)
-- The scheduler writes the copies; the trigger below queues a waiting copy when the last
-- earlier copy of its schedule ends, whoever ended it.

SET LOCAL search_path TO {{schema}}, pg_catalog;

ALTER TABLE task
  ADD COLUMN shed_overlap text NOT NULL DEFAULT 'allow'
      CONSTRAINT task_shed_overlap_valid CHECK (shed_overlap IN ('allow', 'skip', 'queue', 'cancel_previous'));

CREATE OR REPLACE FUNCTION task_overlap_release() RETURNS trigger
LANGUAGE plpgsql
SET search_path = {{schema}}, pg_catalog
AS $$
DECLARE
  parents bigint[];
BEGIN
  parents := ARRAY(SELECT DISTINCT shed_parent_id FROM new_rows
                    WHERE shed_parent_id IS NOT NULL AND state_id IN ('CS', 'CF', 'CC'));
  IF cardinality(parents) = 0 THEN
    RETURN NULL;
  END IF;
  -- The copy waiting in DR for each of those schedules, once none of its copies is active.
  UPDATE task w
     SET state_id = 'AW', worker_id = NULL
   WHERE w.shed_parent_id = ANY (parents) AND w.state_id = 'DR'
     AND EXISTS (SELECT 1 FROM task p WHERE p.id = w.shed_parent_id AND p.shed_overlap IN ('queue', 'cancel_previous'))
     AND NOT EXISTS (SELECT 1 FROM task a WHERE a.shed_parent_id = w.shed_parent_id
                       AND (a.state_id IN ('AW', 'AE', 'AC') OR a.live_worker_id IS NOT NULL));
  RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS task_overlap_release_update ON task;
CREATE TRIGGER task_overlap_release_update AFTER UPDATE ON task
  REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION task_overlap_release();
