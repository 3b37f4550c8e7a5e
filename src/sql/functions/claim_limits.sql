-- For one claim of group p_group for p_free slots (p_held: the claim's lease term holds):
--   budget      how many tasks it may claim (p_free, less what the group's limit leaves)
--   keyed       whether it holds the keys' lock: if not, it claims no keyed task
--   blocked     keys at their limit (not even read by the claim)
--   room_keys,  for keys with live runs or a limit row, and room left: how many more may
--   rooms       start (any other key: 1); a key with a rate (migration 27): the smaller of
--               what max_running leaves and the starts its window has left
--   rated_keys  keys with a rate: the claim records each start of theirs in concurrency_start
--   wake_ms     a key held back by its rate, with a task waiting in this group: in how many ms
--               the first of them frees a start (null: none). The node arms a timer for it:
--               nothing else would wake it, as no run's end or notification says a window moved.
CREATE OR REPLACE FUNCTION {{schema}}.claim_limits(p_group integer, p_free integer, p_held boolean, OUT budget integer, OUT keyed boolean, OUT blocked text[], OUT room_keys text[], OUT rooms integer[], OUT rated_keys text[], OUT wake_ms double precision)
 RETURNS record
 LANGUAGE plpgsql
 SET search_path TO {{schema}}, pg_catalog, pg_temp
AS $function$
DECLARE
  -- (This installation's own lock class: another schema in the database has its own table.)
  lock_class int := hashtext('pg-tasks limits ' || 'task'::regclass::oid::text);
  group_max int;
BEGIN
  budget := CASE WHEN p_held THEN greatest(p_free, 0) ELSE 0 END;
  keyed := false;
  blocked := '{}';
  rated_keys := '{}';
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
    IF NOT EXISTS (SELECT 1 FROM concurrency_limit c
                    WHERE c.max_starts IS NOT NULL
                      AND EXISTS (SELECT 1 FROM task t WHERE t.state_id = 'AW' AND t.concurrency_key = c.key AND t.group_id = p_group)) THEN
      -- No key with a rate (migration 27) has a task waiting in this group: the count of
      -- version 9, and the rated keys held back (none waits here; one that a change of a
      -- task's key brings in meanwhile is then not taken uncounted).
      blocked := ARRAY(SELECT c.key FROM concurrency_limit c WHERE c.max_starts IS NOT NULL);
      WITH live AS (
        SELECT t.concurrency_key AS key, count(*)::int AS n
          FROM task t
         WHERE t.live_worker_id IS NOT NULL AND t.concurrency_key IS NOT NULL
         GROUP BY t.concurrency_key
      ), room AS (
        SELECT coalesce(l.key, c.key) AS key, coalesce(c.max_running, 1) - coalesce(l.n, 0) AS room
          FROM live l FULL JOIN concurrency_limit c ON c.key = l.key
      )
      SELECT blocked || coalesce(array_agg(key) FILTER (WHERE room <= 0), '{}'),
             coalesce(array_agg(key) FILTER (WHERE room > 0), '{}'),
             coalesce(array_agg(room) FILTER (WHERE room > 0), '{}')
        INTO blocked, room_keys, rooms
        FROM room;
      RETURN;
    END IF;
    -- Rates: the starts that left their window go (an index range per rated key waiting here;
    -- none, most claims).
    DELETE FROM concurrency_start s USING concurrency_limit c
     WHERE s.key = c.key AND c.max_starts IS NOT NULL AND s.started <= now() - c.period
       AND EXISTS (SELECT 1 FROM task t WHERE t.state_id = 'AW' AND t.concurrency_key = c.key AND t.group_id = p_group);
    -- Every key with live runs or a limit row (read here, under the lock: a limit changed
    -- while this claim waited is seen); a key in neither has the default room, 1. A start is
    -- in the window when it is later than now() - period: now() is this claim's start, the
    -- time it records for its own starts, so a window never holds more than max_starts.
    WITH live AS (
      SELECT t.concurrency_key AS key, count(*)::int AS n
        FROM task t
       WHERE t.live_worker_id IS NOT NULL AND t.concurrency_key IS NOT NULL
       GROUP BY t.concurrency_key
    ), recent AS (
      -- Counted only for the rated keys with a task waiting in this group (the only ones this
      -- claim may take); n null for the others, which are held back (blocked) for this claim:
      -- a key changed meanwhile to one of them is then never taken uncounted.
      SELECT c.key, c.max_starts, c.period,
             CASE WHEN EXISTS (SELECT 1 FROM task t WHERE t.state_id = 'AW' AND t.concurrency_key = c.key AND t.group_id = p_group)
                  THEN (SELECT count(*) FROM concurrency_start s WHERE s.key = c.key AND s.started > now() - c.period)::int
             END AS n
        FROM concurrency_limit c
       WHERE c.max_starts IS NOT NULL
    ), room AS (
      SELECT coalesce(l.key, c.key) AS key,
             -- (least ignores the null of a key with no rate.)
             least(coalesce(c.max_running, 1) - coalesce(l.n, 0),
                   CASE WHEN r.key IS NOT NULL THEN coalesce(r.max_starts - r.n, 0) END) AS room,
             r.n IS NOT NULL AS rated,
             -- Held back by its rate: the window frees a start when the oldest start it must
             -- lose leaves it (the (n - max_starts + 1)th oldest).
             CASE WHEN r.n >= r.max_starts
                  THEN (SELECT s.started + r.period FROM concurrency_start s
                         WHERE s.key = r.key AND s.started > now() - r.period
                         ORDER BY s.started OFFSET r.n - r.max_starts LIMIT 1)
             END AS frees_at
        FROM live l FULL JOIN concurrency_limit c ON c.key = l.key
        LEFT JOIN recent r ON r.key = c.key
    )
    SELECT coalesce(array_agg(key) FILTER (WHERE room <= 0), '{}'),
           coalesce(array_agg(key) FILTER (WHERE room > 0), '{}'),
           coalesce(array_agg(room) FILTER (WHERE room > 0), '{}'),
           coalesce(array_agg(key) FILTER (WHERE rated), '{}'),
           -- (greatest would turn no instant, a null, into 0: a wake at once, a poll.)
           CASE WHEN min(frees_at) IS NOT NULL THEN greatest(extract(epoch FROM min(frees_at) - clock_timestamp()) * 1000, 0)::double precision END
      INTO blocked, room_keys, rooms, rated_keys, wake_ms
      FROM room;
  END IF;
END;
$function$;
