-- The id of the unended task (DR, AW, AE, AC) that holds unique key p_key; null if none.
-- SECURITY DEFINER so that a duplicate's refusal names the holder even when row-level security
-- hides it from the writer (a submitter's key held by another owner's task): the id only,
-- nothing else of that task. Keys are cluster-wide, so a writer who knows a key learns that
-- some task holds it either way (its insert is refused); the id adds where to look.
CREATE OR REPLACE FUNCTION {{schema}}.unique_key_holder(p_key text)
 RETURNS bigint
 LANGUAGE sql
 STABLE SECURITY DEFINER
 SET search_path TO {{schema}}, pg_catalog, pg_temp
AS $function$
  SELECT id FROM task WHERE unique_key = p_key AND state_id IN ('DR', 'AW', 'AE', 'AC')
$function$;
