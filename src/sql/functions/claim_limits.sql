-- For one claim of group p_group for p_free slots (p_held: the claim's lease term holds):
--   budget      how many tasks it may claim (p_free, less what the group's limit leaves)
--   keyed       whether it holds the keys' lock: if not, it claims no keyed task
--   blocked     keys at their limit (not even read by the claim)
--   room_keys,  for keys with live runs or a limit row, and room left: how many more may
--   rooms       start (any other key: 1)
CREATE OR REPLACE FUNCTION {{schema}}.claim_limits(p_group integer, p_free integer, p_held boolean, OUT budget integer, OUT keyed boolean, OUT blocked text[], OUT room_keys text[], OUT rooms integer[])
 RETURNS record
 LANGUAGE plpgsql
 SET search_path TO {{schema}}, pg_catalog
AS $function$
DECLARE
  -- (This installation's own lock class: another schema in the database has its own table.)
  lock_class int := hashtext('pg-tasks limits ' || 'task'::regclass::oid::text);
  group_max int;
BEGIN
  budget := CASE WHEN p_held THEN greatest(p_free, 0) ELSE 0 END;
  keyed := false;
  blocked := '{}';
  IF budget = 0 THEN
    RETURN;
  END IF;
  IF EXISTS (SELECT 1 FROM task_group g WHERE g.id = p_group AND g.max_running IS NOT NULL) THEN
    PERFORM pg_advisory_xact_lock(lock_class, p_group);
    -- Read again under the lock: a change that committed meanwhile is seen.
    SELECT g.max_running INTO group_max FROM task_group g WHERE g.id = p_group;
    IF group_max IS NOT NULL THEN
      budget := least(budget, greatest(group_max - (SELECT count(*) FROM task t
                                                    WHERE t.group_id = p_group AND t.live_worker_id IS NOT NULL)::int, 0));
    END IF;
  END IF;
  IF budget > 0 AND EXISTS (SELECT 1 FROM task t WHERE t.group_id = p_group AND t.state_id = 'AW' AND t.concurrency_key IS NOT NULL) THEN
    -- One lock for every key: a claim doesn't know which keys it will take before it reads
    -- its tasks, and one lock can't deadlock. (Group locks are taken first, always.)
    PERFORM pg_advisory_xact_lock(lock_class, -1);
    keyed := true;
    -- Every key with live runs or a limit row (read here, under the lock: a limit changed
    -- while this claim waited is seen); a key in neither has the default room, 1.
    WITH live AS (
      SELECT t.concurrency_key AS key, count(*)::int AS n
        FROM task t
       WHERE t.live_worker_id IS NOT NULL AND t.concurrency_key IS NOT NULL
       GROUP BY t.concurrency_key
    ), room AS (
      SELECT coalesce(l.key, c.key) AS key, coalesce(c.max_running, 1) - coalesce(l.n, 0) AS room
        FROM live l FULL JOIN concurrency_limit c ON c.key = l.key
    )
    SELECT coalesce(array_agg(key) FILTER (WHERE room <= 0), '{}'),
           coalesce(array_agg(key) FILTER (WHERE room > 0), '{}'),
           coalesce(array_agg(room) FILTER (WHERE room > 0), '{}')
      INTO blocked, room_keys, rooms
      FROM room;
  END IF;
END;
$function$;
