-- p_ids, p_expected, p_next: each row the node armed its timer for, the next_start it read, and
-- the slot after it (null: a one-shot schedule). A row fires only while next_start is still
-- p_expected, is due, and p_next is still the first slot after now (a fire later than p_next
-- catches up, and that is the general fire's to compute). p_now: null = now().
-- Returns each row fired, and what its slot did: 'requeued', 'cloned' or 'skipped' (the task
-- has not ended: the slot is counted in shed_skip_count, as the general fire does).
CREATE OR REPLACE FUNCTION {{schema}}.fire_slots(p_group integer, p_ids bigint[], p_expected timestamp with time zone[], p_next timestamp with time zone[], p_now timestamp with time zone)
 RETURNS TABLE(id bigint, action text)
 LANGUAGE plpgsql
 SET search_path TO {{schema}}, pg_catalog, pg_temp
AS $function$
DECLARE
  v_now timestamptz := coalesce(p_now, now());
BEGIN
  -- The scheduler's own writes keep the schedule's anchor and pass the write rules for its
  -- copies (task_schedule_rules, task_command_rules_*), as in the general fire.
  PERFORM set_config('pg_tasks.advancing', 'on', true);
  RETURN QUERY
  WITH due AS (
    SELECT t.id, t.state_id, t.shed_clone, r.next,
           NOT t.shed_clone AND (t.state_id LIKE 'C%' OR (t.state_id = 'DR' AND t.shed_cron IS NULL AND t.shed_period_id IS NULL))
             -- Its unique_key held by another unended task: skipped, not re-queued (migration 24).
             AND (t.unique_key IS NULL OR coalesce(unique_key_holder(t.unique_key), t.id) = t.id) AS requeue
      FROM task t
      JOIN unnest(p_ids, p_expected, p_next) AS r(id, expected, next) ON r.id = t.id
     WHERE t.group_id = p_group
       AND t.next_start = r.expected AND t.next_start <= v_now
       AND (r.next IS NULL OR r.next > v_now)
       AND (NOT t.shed_clone OR t.shed_overlap = 'allow')
       FOR UPDATE OF t SKIP LOCKED
  ), copies AS (
    -- The same copy as the general fire's cloneScheduled: its parent's owner's, too.
    INSERT INTO task (params, state_id, priority, group_id, command, cwd, shed_parent_id, recover_policy,
                      timeout, max_attempts, backoff_base, backoff_cap, retry_on, owner, unique_key, shed_slot,
                      run_as, memory_max, cpu_seconds_max, open_files_max, pids_max, cpu_max, heartbeat_timeout, concurrency_key)
    SELECT t.params, 'AW', t.priority, t.group_id, t.command, t.cwd, t.id, t.recover_policy,
           t.timeout, t.max_attempts, t.backoff_base, t.backoff_cap, t.retry_on, t.owner,
           unique_key_for_slot(t.shed_unique_key, t.next_start), t.next_start,
           t.run_as, t.memory_max, t.cpu_seconds_max, t.open_files_max, t.pids_max, t.cpu_max, t.heartbeat_timeout, t.concurrency_key
      FROM task t JOIN due d ON d.id = t.id
     WHERE d.shed_clone
    -- A copy whose key (shed_unique_key for this slot) an unended task holds is not made.
    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND state_id IN ('DR', 'AW', 'AE', 'AC') DO NOTHING
    RETURNING shed_parent_id
  ), advanced AS (
    UPDATE task t
       SET next_start = d.next,
           state_id = CASE WHEN d.requeue THEN 'AW' ELSE t.state_id END,
           worker_id = CASE WHEN d.requeue THEN NULL ELSE t.worker_id END,
           shed_skip_count = t.shed_skip_count + CASE WHEN d.shed_clone OR d.requeue THEN 0 ELSE 1 END
      FROM due d
     WHERE t.id = d.id
    RETURNING t.id, CASE WHEN d.shed_clone THEN 'cloned' WHEN d.requeue THEN 'requeued' ELSE 'skipped' END AS action
  )
  -- copies is not read: a data-modifying WITH runs to completion whether or not it is.
  SELECT a.id, a.action FROM advanced a;
END;
$function$;
