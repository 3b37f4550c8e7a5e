-- Whether backend p_pid holds worker p_worker's lock now. pg_locks is read live from the lock
-- manager: a session that ended has released its locks before it leaves pg_stat_activity.
CREATE OR REPLACE FUNCTION {{schema}}.worker_lock_held(p_worker integer, p_pid integer)
 RETURNS boolean
 LANGUAGE sql
 STABLE
 SET search_path TO {{schema}}, pg_catalog, pg_temp
AS $function$
  SELECT EXISTS (SELECT 1 FROM pg_locks l
                  WHERE l.locktype = 'advisory' AND l.classid = worker_lock_class()::oid
                    AND l.objid = p_worker::oid AND l.objsubid = 2
                    AND l.pid = p_pid AND l.mode = 'ExclusiveLock' AND l.granted)
$function$;
