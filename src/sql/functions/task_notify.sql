-- The notifications of the task table, read from the statement's rows in one pass. They are
-- statement-level: one INSERT or UPDATE of 100 000 rows sends one notification per group with
-- waiting work and one per worker with cancellations, not one per row. They are hints; nodes
-- read the table to learn what actually changed. The channel is the schema name, so several
-- schemas in one database don't wake each other.
--   queued    a group has tasks that may start; also when a statement ends runs (clears live
--             marks) of a group with max_running, or of keyed tasks, to the group and to each
--             group with a task waiting for one of those keys: a node held back by a limit
--             claims again only on such a hint
--   delayed   a group has tasks waiting for a time (a retry's backoff)
--   cancel    to the worker whose process lives (the row may name another, or none)
--   schedule  a group's scheduled rows were written, changed or not (comparing with the old
--             rows would need a join of two transition tables, which have no statistics)
--   ended     tasks the statement left ended (C*), up to 100 of them, for clients waiting on
--             them (TaskClient.wait); without ids it means "look again"
CREATE OR REPLACE FUNCTION {{schema}}.task_notify()
 RETURNS trigger
 LANGUAGE plpgsql
 SET search_path TO {{schema}}, pg_catalog, pg_temp
AS $function$
DECLARE
  queued int[];
  delayed int[];
  cancels int[];
  schedules int[];
  ended bigint[];
  ended_count bigint;
  freed_groups int[];
  freed_keys text[];
BEGIN
  -- Most of a node's statements (its claims, its pids) leave every row executing, with no
  -- schedule: nothing to say, found in one pass.
  IF NOT EXISTS (SELECT 1 FROM new_rows WHERE state_id <> 'AE' OR next_start IS NOT NULL OR shed_cron IS NOT NULL) THEN
    RETURN NULL;
  END IF;
  SELECT array_agg(DISTINCT group_id) FILTER (WHERE state_id = 'AW' AND run_after IS NULL AND live_worker_id IS NULL AND deps_left = 0),
         array_agg(DISTINCT group_id) FILTER (WHERE state_id = 'AW' AND run_after IS NOT NULL),
         array_agg(DISTINCT coalesce(live_worker_id, worker_id)) FILTER (WHERE state_id = 'AC'),
         array_agg(DISTINCT group_id) FILTER (WHERE next_start IS NOT NULL OR shed_cron IS NOT NULL),
         (array_agg(id) FILTER (WHERE state_id IN ('CS', 'CF', 'CC')))[1:100],
         count(*) FILTER (WHERE state_id IN ('CS', 'CF', 'CC')),
         -- Rows that ran once and have no live run now: a run may have just ended. (More than
         -- that, sometimes: a hint too many costs a claim that finds nothing.)
         array_agg(DISTINCT group_id) FILTER (WHERE live_worker_id IS NULL AND started IS NOT NULL AND state_id <> 'AE'),
         array_agg(DISTINCT concurrency_key) FILTER (WHERE live_worker_id IS NULL AND started IS NOT NULL AND state_id <> 'AE'
                                                     AND concurrency_key IS NOT NULL)
    INTO queued, delayed, cancels, schedules, ended, ended_count, freed_groups, freed_keys
    FROM new_rows;
  IF freed_groups IS NOT NULL THEN
    queued := coalesce(queued, '{}') || ARRAY(SELECT id FROM task_group WHERE id = ANY (freed_groups) AND max_running IS NOT NULL);
  END IF;
  IF freed_keys IS NOT NULL THEN
    queued := coalesce(queued, '{}') || ARRAY(SELECT DISTINCT t.group_id FROM task t
                                               WHERE t.state_id = 'AW' AND t.concurrency_key = ANY (freed_keys));
  END IF;
  -- (A payload is sent once per transaction, however often it is notified: see notify_event.)
  PERFORM notify_event(TG_TABLE_SCHEMA, 'queued', p_group => q.id) FROM unnest(queued) AS q(id);
  -- Waiting for a time (a retry's backoff): the group's nodes re-arm their retry timers.
  PERFORM notify_event(TG_TABLE_SCHEMA, 'delayed', p_group => d.id) FROM unnest(delayed) AS d(id);
  PERFORM notify_event(TG_TABLE_SCHEMA, 'cancel', p_worker => c.id) FROM unnest(cancels) AS c(id);
  PERFORM notify_event(TG_TABLE_SCHEMA, 'schedule', p_group => s.id) FROM unnest(schedules) AS s(id);
  IF ended_count > 100 THEN
    PERFORM notify_event(TG_TABLE_SCHEMA, 'ended');
  ELSIF ended_count > 0 THEN
    PERFORM notify_event(TG_TABLE_SCHEMA, 'ended', p_ids => ended);
  END IF;
  RETURN NULL;
END;
$function$;

DROP TRIGGER IF EXISTS task_notify_insert ON {{schema}}.task;
CREATE TRIGGER task_notify_insert AFTER INSERT ON {{schema}}.task REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {{schema}}.task_notify();
DROP TRIGGER IF EXISTS task_notify_update ON {{schema}}.task;
CREATE TRIGGER task_notify_update AFTER UPDATE ON {{schema}}.task REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {{schema}}.task_notify();
