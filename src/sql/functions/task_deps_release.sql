-- SECURITY DEFINER: it writes rows the writer of the row that fired it may not (see the
-- note in src/sql/roles.sql); its search_path is fixed, pg_temp last.
-- At the end of each statement that wrote tasks: the waiting (or draft) tasks that depend on
-- a task it wrote, and the ones it wrote with prerequisites, count what is left; a waiting
-- one whose prerequisite ended CF or CC for good ends CC 'dependency'. Set-based: one
-- statement for the whole batch. Its own update runs this trigger again, one level further
-- down the graph, until nothing changes: that is how a cancel reaches the whole DAG. A task
-- whose count reaches 0 enters the claim's indexes, and task_notify wakes its group.
-- It takes its prerequisites' share locks without ever waiting for one while it holds
-- another (a node ending several runs at once, in no particular order, and a statement
-- writing a dependent of some of them, could deadlock: seen in CI).
CREATE OR REPLACE FUNCTION {{schema}}.task_deps_release()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO {{schema}}, pg_catalog, pg_temp
AS $function$
DECLARE
  written bigint[];
  prereqs bigint[];
  prereq bigint;
  blocked bigint;
BEGIN
  -- The usual statement (a node's claims, pids and ends, with no dependents anywhere) pays
  -- one probe of an empty index and nothing more.
  IF NOT EXISTS (SELECT 1 FROM task WHERE depends_on IS NOT NULL AND state_id IN ('AW', 'DR')) THEN
    RETURN NULL;
  END IF;
  -- Deleted tasks fail their dependents, as if ended CF.
  written := CASE WHEN TG_OP = 'DELETE' THEN ARRAY(SELECT id FROM new_rows)
                  ELSE ARRAY(SELECT id FROM new_rows WHERE state_id NOT IN ('AE', 'AC')) END;
  IF cardinality(written) = 0 THEN
    RETURN NULL;
  END IF;
  -- Concurrent statements. Each locks the dependents it is about to count (in id order), and
  -- the prerequisites of the dependents it wrote itself (FOR SHARE), then counts in a new
  -- snapshot (each statement here takes its own). So of two statements that end two
  -- prerequisites of one task, the second waits for the first and sees what it wrote; and a
  -- statement that writes a dependent while another ends one of its prerequisites either
  -- waits for that one, or makes it wait (its update of the prerequisite conflicts with the
  -- share lock) until the dependent is there to be found.
  PERFORM 1 FROM task t
   WHERE t.depends_on IS NOT NULL AND t.state_id IN ('AW', 'DR')
     AND (t.depends_on && written OR t.id = ANY (written))
   ORDER BY t.id
     FOR UPDATE;
  -- (Only for a statement's own writes: the recount below, one level down, would otherwise
  -- hold its dependent's row while waiting for a prerequisite another statement holds, while
  -- that one waits for the dependent.)
  IF pg_trigger_depth() = 1 THEN
    prereqs := ARRAY(SELECT DISTINCT unnest(t.depends_on) FROM task t
                      WHERE t.id = ANY (written) AND t.depends_on IS NOT NULL AND t.state_id IN ('AW', 'DR')
                      ORDER BY 1);
    -- Never wait for one prerequisite while holding the share lock of another: a node's end
    -- of several runs locks its rows in no particular order, so holding p1 while waiting for
    -- p5 (which that statement holds, while it waits for p1) would be a deadlock. So: take
    -- them all without waiting, or, at the first that is locked, let go of the ones taken
    -- (the block's subtransaction is rolled back), wait for that one alone, and start over.
    LOOP
      blocked := NULL;
      BEGIN
        FOREACH prereq IN ARRAY prereqs LOOP
          blocked := prereq;
          PERFORM 1 FROM task WHERE id = prereq FOR SHARE NOWAIT;
        END LOOP;
        blocked := NULL;
      EXCEPTION WHEN lock_not_available THEN
        NULL;
      END;
      EXIT WHEN blocked IS NULL;
      BEGIN
        -- (Waits until its holder ends; the lock goes with the block, by the raise.)
        PERFORM 1 FROM task WHERE id = blocked FOR SHARE;
        RAISE EXCEPTION 'waited' USING ERRCODE = 'PT001';
      EXCEPTION WHEN SQLSTATE 'PT001' THEN
        NULL;
      END;
    END LOOP;
  END IF;
  UPDATE task d
     SET deps_left = c.deps_left,
         state_id   = CASE WHEN c.failed IS NOT NULL AND d.state_id = 'AW' THEN 'CC' ELSE d.state_id END,
         end_reason = CASE WHEN c.failed IS NOT NULL AND d.state_id = 'AW' THEN 'dependency' ELSE d.end_reason END,
         error      = CASE WHEN c.failed IS NOT NULL AND d.state_id = 'AW'
                           THEN format('Cancelled: it depends on task %s, which %s', c.failed, c.failed_what)
                           ELSE d.error END,
         finished   = CASE WHEN c.failed IS NOT NULL AND d.state_id = 'AW' THEN now() ELSE d.finished END
    FROM (SELECT t.id,
                 count(*) FILTER (WHERE p.state_id IS DISTINCT FROM 'CS')::int AS deps_left,
                 min(dep.id) FILTER (WHERE p.id IS NULL OR p.state_id IN ('CF', 'CC')) AS failed,
                 (array_agg(CASE WHEN p.id IS NULL THEN 'was deleted' ELSE 'ended ' || p.state_id END ORDER BY dep.id)
                    FILTER (WHERE p.id IS NULL OR p.state_id IN ('CF', 'CC')))[1] AS failed_what
            FROM task t
            CROSS JOIN LATERAL unnest(t.depends_on) AS dep(id)
            LEFT JOIN task p ON p.id = dep.id
           WHERE t.depends_on IS NOT NULL AND t.state_id IN ('AW', 'DR')
             AND (t.depends_on && written OR t.id = ANY (written))
           GROUP BY t.id) c
   WHERE d.id = c.id
     AND (d.deps_left <> c.deps_left OR (c.failed IS NOT NULL AND d.state_id = 'AW'));
  RETURN NULL;
END;
$function$;

DROP TRIGGER IF EXISTS task_deps_release_delete ON {{schema}}.task;
CREATE TRIGGER task_deps_release_delete AFTER DELETE ON {{schema}}.task REFERENCING OLD TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {{schema}}.task_deps_release();
DROP TRIGGER IF EXISTS task_deps_release_insert ON {{schema}}.task;
CREATE TRIGGER task_deps_release_insert AFTER INSERT ON {{schema}}.task REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {{schema}}.task_deps_release();
DROP TRIGGER IF EXISTS task_deps_release_update ON {{schema}}.task;
CREATE TRIGGER task_deps_release_update AFTER UPDATE ON {{schema}}.task REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {{schema}}.task_deps_release();
