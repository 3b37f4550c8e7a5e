-- A raised limit may let waiting tasks start: wake the nodes that may claim them.
CREATE OR REPLACE FUNCTION {{schema}}.task_group_limit_notify()
 RETURNS trigger
 LANGUAGE plpgsql
 SET search_path TO {{schema}}, pg_catalog, pg_temp
AS $function$
BEGIN
  PERFORM notify_event(TG_TABLE_SCHEMA, 'queued', p_group => NEW.id);
  RETURN NULL;
END;
$function$;

DROP TRIGGER IF EXISTS task_group_limit_notify ON {{schema}}.task_group;
CREATE TRIGGER task_group_limit_notify AFTER UPDATE ON {{schema}}.task_group FOR EACH ROW WHEN ((old.max_running IS DISTINCT FROM new.max_running)) EXECUTE FUNCTION {{schema}}.task_group_limit_notify();
