-- Whether a waiting or draft task names the task as a prerequisite, read in a snapshot of its
-- own (a volatile function's): a prune checks it after locking the row, so a dependent that
-- committed since the prune's statement began is seen, and its prerequisite kept.
CREATE OR REPLACE FUNCTION {{schema}}.is_named_prerequisite(p_id bigint)
 RETURNS boolean
 LANGUAGE sql
 SET search_path TO {{schema}}, pg_catalog, pg_temp
AS $function$
  SELECT EXISTS (SELECT 1 FROM task d WHERE d.depends_on @> ARRAY[p_id] AND d.depends_on IS NOT NULL AND d.state_id IN ('AW', 'DR'));
$function$;
