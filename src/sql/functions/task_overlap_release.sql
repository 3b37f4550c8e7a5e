-- SECURITY DEFINER: it writes rows the writer of the row that fired it may not (see the
-- note in src/sql/roles.sql); its search_path is fixed, pg_temp last.
-- A cloned schedule's copy that waits (in DR, shed_overlap 'queue' or 'cancel_previous') is
-- queued when the last earlier copy of its schedule ends, whoever ended it.
CREATE OR REPLACE FUNCTION {{schema}}.task_overlap_release()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO {{schema}}, pg_catalog, pg_temp
AS $function$
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
$function$;

DROP TRIGGER IF EXISTS task_overlap_release_update ON {{schema}}.task;
CREATE TRIGGER task_overlap_release_update AFTER UPDATE ON {{schema}}.task REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {{schema}}.task_overlap_release();
