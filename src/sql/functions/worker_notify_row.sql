-- Only changes others act on notify: a lease renewal changes locked_until every few seconds
-- and must not wake every node of the cluster. A take-over changes the term (lease_epoch)
-- without changing active: the node that held it is told at once, and so is every node that
-- watches for failed workers. lock_pid changes when a holder gets (or loses) the lock: a
-- standby waits for it again.
CREATE OR REPLACE FUNCTION {{schema}}.worker_notify_row()
 RETURNS trigger
 LANGUAGE plpgsql
 SET search_path TO {{schema}}, pg_catalog, pg_temp
AS $function$
BEGIN
  IF TG_OP = 'INSERT' OR NEW.stop IS DISTINCT FROM OLD.stop OR NEW.active IS DISTINCT FROM OLD.active
     OR NEW.lease_epoch IS DISTINCT FROM OLD.lease_epoch OR NEW.lock_pid IS DISTINCT FROM OLD.lock_pid THEN
    PERFORM notify_event(TG_TABLE_SCHEMA, 'worker', p_worker => NEW.id);
  END IF;
  RETURN NULL;
END;
$function$;

DROP TRIGGER IF EXISTS worker_notify ON {{schema}}.worker;
CREATE TRIGGER worker_notify AFTER INSERT OR UPDATE ON {{schema}}.worker FOR EACH ROW EXECUTE FUNCTION {{schema}}.worker_notify_row();
