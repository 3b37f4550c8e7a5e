-- The first key of the workers' advisory locks: this installation's own, as another schema in
-- the database has its own task table (the same scheme as the limits' lock class).
CREATE OR REPLACE FUNCTION {{schema}}.worker_lock_class()
 RETURNS integer
 LANGUAGE sql
 STABLE
 SET search_path TO {{schema}}, pg_catalog, pg_temp
AS $function$ SELECT hashtext('pg-tasks worker ' || 'task'::regclass::oid::text) $function$;
