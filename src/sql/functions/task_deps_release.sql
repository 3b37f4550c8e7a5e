-- SECURITY DEFINER: it writes rows the writer of the row that fired it may not (see the
-- note in src/sql/roles.sql); its search_path is fixed, pg_temp last.
-- At the end of each statement that wrote tasks: the waiting (or draft) tasks that depend on
-- a task it wrote, and the ones it wrote with prerequisites, count what is left by their
-- depends_rule; a waiting one that can no longer run (all_success: a prerequisite ended CF or
-- CC for good; any_failed: all ended, none failed) ends CC 'dependency', and the tasks that
-- depend on it are read again, transitively: a loop walks the graph down, a level a turn, and one
-- UPDATE writes all it found. Set-based: a bounded number of statements per level, whatever
-- the batch, and a fixed stack depth, whatever the depth of the graph. A task whose count
-- reaches 0 enters the claim's indexes, and task_notify wakes its group.
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
  -- The work: new counts (count_*), and the waiting tasks to cancel, with their errors
  -- (cancel_*). A turn of the walk reads the dependents of scope (and the tasks in own), and
  -- finds the ones it recounted, their new counts (next_*), and the ones it cancels (level).
  count_ids bigint[];
  count_left int[];
  cancel_ids bigint[];
  cancel_error text[];
  scope bigint[];
  own bigint[];
  candidates bigint[];
  recounted bigint[];
  next_ids bigint[];
  next_left int[];
  level bigint[];
  next_error text[];
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
  -- (Only for a statement's own writes: nested under another trigger's write, or under this
  -- one's own UPDATE below, it would wait for a prerequisite another statement holds while
  -- the outer one holds dependents' rows that statement may be waiting for.)
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
  -- The statement's own writes: recount their dependents, and them (the first turn of the
  -- loop); then the tasks that depend on those it cancels, one level of the graph a turn,
  -- each level locked (in id order) before it is read, as if the levels above had ended CC
  -- 'dependency'. Read, not yet written: one UPDATE below writes all it found, so a chain of
  -- any depth ends in this statement at a fixed stack depth (writing each level in turn would
  -- run this trigger once more per level, nested, until the stack runs out: a 1 000-level
  -- chain did, inside the node's finishRuns).
  -- Each task's rule (depends_rule) reads its prerequisites so:
  --   all_success  left: those not CS; cancelled when one ended CF or CC, or was deleted
  --   all_done     left: those not ended (a deleted one has ended); never cancelled
  --   any_failed   left: 0 once one failed, else those not ended, at least 1 (it never runs
  --                unless one fails); cancelled when all ended and none failed
  -- Failed: CF, deleted, or CC 'dependency' of a task that is not any_failed (one cancelled
  -- because a prerequisite of its own failed; an any_failed task ends so when none did).
  -- Only waiting tasks are cancelled; a draft's count is kept, and read again when it is queued.
  count_ids := '{}'; count_left := '{}'; cancel_ids := '{}'; cancel_error := '{}';
  scope := written;
  own := written;
  LOOP
    -- (The turn's tasks first, by the dependents' index and the ids: an OR of the two in the
    -- query below would be planned once for every turn, as a scan of the whole table.)
    candidates := ARRAY(SELECT t.id FROM task t
                         WHERE t.depends_on IS NOT NULL AND t.state_id IN ('AW', 'DR') AND t.depends_on && scope
                        UNION
                        SELECT unnest(own));
    SELECT coalesce(array_agg(c.id), '{}'),
           coalesce(array_agg(c.id) FILTER (WHERE c.new_left <> c.old_left), '{}'),
           coalesce(array_agg(c.new_left) FILTER (WHERE c.new_left <> c.old_left), '{}'),
           coalesce(array_agg(c.id) FILTER (WHERE c.error IS NOT NULL), '{}'),
           coalesce(array_agg(c.error) FILTER (WHERE c.error IS NOT NULL), '{}')
      INTO recounted, next_ids, next_left, level, next_error
      FROM (SELECT s.id, s.old_left,
                   CASE s.rule WHEN 'all_done' THEN s.pending
                               WHEN 'any_failed' THEN CASE WHEN s.failures > 0 THEN 0 ELSE greatest(s.pending, 1) END
                               ELSE s.not_cs END AS new_left,
                   CASE WHEN s.state_id <> 'AW' THEN NULL
                        WHEN s.rule = 'all_success' AND s.first_bad IS NOT NULL
                        THEN format('Cancelled: it depends on task %s, which %s', s.first_bad, s.first_bad_what)
                        WHEN s.rule = 'any_failed' AND s.failures = 0 AND s.pending = 0
                        THEN 'Cancelled: it runs only if a task it depends on fails, and none did' END AS error
              FROM (SELECT t.id, t.deps_left AS old_left, t.state_id, t.depends_rule AS rule,
                           count(*) FILTER (WHERE e.state IS DISTINCT FROM 'CS')::int AS not_cs,
                           count(*) FILTER (WHERE NOT e.ended)::int AS pending,
                           count(*) FILTER (WHERE e.failed)::int AS failures,
                           min(dep.id) FILTER (WHERE e.ended AND e.state IS DISTINCT FROM 'CS') AS first_bad,
                           (array_agg(CASE WHEN p.id IS NULL THEN 'was deleted' ELSE 'ended ' || e.state END ORDER BY dep.id)
                              FILTER (WHERE e.ended AND e.state IS DISTINCT FROM 'CS'))[1] AS first_bad_what
                      FROM task t
                      CROSS JOIN LATERAL unnest(t.depends_on) AS dep(id)
                      LEFT JOIN task p ON p.id = dep.id
                      LEFT JOIN unnest(cancel_ids) AS x(id) ON x.id = dep.id
                      CROSS JOIN LATERAL (SELECT CASE WHEN x.id IS NOT NULL THEN 'CC' ELSE p.state_id END AS state) st
                      CROSS JOIN LATERAL (SELECT p.id IS NULL OR st.state IN ('CS', 'CF', 'CC') AS ended,
                                                 p.id IS NULL OR st.state = 'CF'
                                                 OR (st.state = 'CC' AND (x.id IS NOT NULL OR p.end_reason = 'dependency')
                                                     AND p.depends_rule <> 'any_failed') AS failed,
                                                 st.state) e
                     WHERE t.id = ANY (candidates) AND t.depends_on IS NOT NULL AND t.state_id IN ('AW', 'DR')
                       AND NOT t.id = ANY (cancel_ids)
                     GROUP BY t.id, t.deps_left, t.state_id, t.depends_rule) s) c;
    -- A later turn reads more prerequisites as ended than an earlier one: its count wins.
    SELECT coalesce(array_agg(k.id), '{}'), coalesce(array_agg(k.n), '{}')
      INTO count_ids, count_left
      FROM unnest(count_ids, count_left) AS k(id, n) WHERE NOT k.id = ANY (recounted);
    count_ids := count_ids || next_ids;
    count_left := count_left || next_left;
    cancel_ids := cancel_ids || level;
    cancel_error := cancel_error || next_error;
    EXIT WHEN cardinality(level) = 0;
    PERFORM 1 FROM task t
     WHERE t.depends_on IS NOT NULL AND t.state_id IN ('AW', 'DR') AND t.depends_on && level
     ORDER BY t.id
       FOR UPDATE;
    scope := level;
    own := '{}';
  END LOOP;
  IF cardinality(count_ids) = 0 AND cardinality(cancel_ids) = 0 THEN
    RETURN NULL;
  END IF;
  -- One write for all of it. It runs this trigger once more, which finds nothing left to do.
  UPDATE task d
     SET deps_left  = coalesce(c.deps_left, d.deps_left),
         state_id   = CASE WHEN c.error IS NOT NULL THEN 'CC' ELSE d.state_id END,
         end_reason = CASE WHEN c.error IS NOT NULL THEN 'dependency' ELSE d.end_reason END,
         error      = coalesce(c.error, d.error),
         finished   = CASE WHEN c.error IS NOT NULL THEN now() ELSE d.finished END
    FROM (SELECT coalesce(n.id, x.id) AS id, n.deps_left, x.error
            FROM unnest(count_ids, count_left) AS n(id, deps_left)
            FULL JOIN unnest(cancel_ids, cancel_error) AS x(id, error) ON x.id = n.id) c
   WHERE d.id = c.id;
  RETURN NULL;
END;
$function$;

DROP TRIGGER IF EXISTS task_deps_release_delete ON {{schema}}.task;
CREATE TRIGGER task_deps_release_delete AFTER DELETE ON {{schema}}.task REFERENCING OLD TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {{schema}}.task_deps_release();
DROP TRIGGER IF EXISTS task_deps_release_insert ON {{schema}}.task;
CREATE TRIGGER task_deps_release_insert AFTER INSERT ON {{schema}}.task REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {{schema}}.task_deps_release();
DROP TRIGGER IF EXISTS task_deps_release_update ON {{schema}}.task;
CREATE TRIGGER task_deps_release_update AFTER UPDATE ON {{schema}}.task REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {{schema}}.task_deps_release();
