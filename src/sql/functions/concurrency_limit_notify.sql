CREATE OR REPLACE FUNCTION {{schema}}.concurrency_limit_notify()
 RETURNS trigger
 LANGUAGE plpgsql
 SET search_path TO {{schema}}, pg_catalog, pg_temp
AS $function$
DECLARE
  keys text[];
BEGIN
  keys := ARRAY(SELECT key FROM new_rows);
  IF TG_OP = 'UPDATE' THEN
    keys := keys || ARRAY(SELECT key FROM old_rows);
  END IF;
  PERFORM notify_event(TG_TABLE_SCHEMA, 'queued', p_group => w.group_id)
     FROM (SELECT DISTINCT t.group_id FROM task t WHERE t.state_id = 'AW' AND t.concurrency_key = ANY (keys)) w;
  RETURN NULL;
END;
$function$;

DROP TRIGGER IF EXISTS concurrency_limit_notify_delete ON {{schema}}.concurrency_limit;
CREATE TRIGGER concurrency_limit_notify_delete AFTER DELETE ON {{schema}}.concurrency_limit REFERENCING OLD TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {{schema}}.concurrency_limit_notify();
DROP TRIGGER IF EXISTS concurrency_limit_notify_insert ON {{schema}}.concurrency_limit;
CREATE TRIGGER concurrency_limit_notify_insert AFTER INSERT ON {{schema}}.concurrency_limit REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {{schema}}.concurrency_limit_notify();
DROP TRIGGER IF EXISTS concurrency_limit_notify_update ON {{schema}}.concurrency_limit;
CREATE TRIGGER concurrency_limit_notify_update AFTER UPDATE ON {{schema}}.concurrency_limit REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {{schema}}.concurrency_limit_notify();
