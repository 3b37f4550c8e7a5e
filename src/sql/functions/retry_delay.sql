-- The one retry rule, for the node's record of a run's end and the recovery of a failed
-- worker alike: the delay before task t runs again after a run that ended with p_end_reason,
-- or null when it does not retry (no attempt left, or a reason not in retry_on). The delay is
-- backoff_base × 2^(attempt − 1), at most backoff_cap, times a jitter of 0.75 to 1.25, so
-- that tasks failing together do not retry together. With the defaults (1 s, 10 min) the
-- delays after attempts 1, 2, 3 … are about 1, 2, 4, 8, 16, 32, 64, 128, 256, 512 s, then
-- 600 s each.
CREATE OR REPLACE FUNCTION {{schema}}.retry_delay(t {{schema}}.task, p_end_reason text)
 RETURNS interval
 LANGUAGE sql
 SET search_path TO {{schema}}, pg_catalog, pg_temp
AS $function$
  -- greatest(attempt, 1): a task set to AE by hand, never claimed, has had its one run. A
  -- lost claim (lost_claims counts them) was no attempt: it counts neither here nor in the backoff.
  SELECT CASE
           WHEN greatest(t.attempt - t.lost_claims, 1) < coalesce(t.max_attempts, g.max_attempts, 1)
            AND p_end_reason = ANY (coalesce(t.retry_on, g.retry_on,
                  ARRAY['exit_code', 'signal', 'timeout', 'worker_failed', 'lost', 'heartbeat']))
           THEN least(coalesce(t.backoff_cap, g.backoff_cap, interval '10 minutes'),
                      coalesce(t.backoff_base, g.backoff_base, interval '1 second') * power(2, least(greatest(t.attempt - t.lost_claims, 1) - 1, 40)))
                * (0.75 + random() / 2)
         END
    FROM (SELECT 1) AS one
    LEFT JOIN task_group g ON g.id = t.group_id
$function$;
