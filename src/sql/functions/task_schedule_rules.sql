CREATE OR REPLACE FUNCTION {{schema}}.task_schedule_rules()
 RETURNS trigger
 LANGUAGE plpgsql
 SET search_path TO {{schema}}, pg_catalog, pg_temp
AS $function$
DECLARE
  valid boolean;
BEGIN
  IF NEW.shed_period_id IS NOT NULL AND NEW.shed_period_count IS NULL THEN
    NEW.shed_period_count := 1;
  END IF;
  IF NEW.shed_cron IS NOT NULL AND (TG_OP = 'INSERT' OR NEW.shed_cron IS DISTINCT FROM OLD.shed_cron) THEN
    -- The validators are looked up in the trigger's own schema at run time, so that no schema
    -- name is spelled inside this dollar-quoted body. Only a changed cron or zone pays for it.
    EXECUTE format('SELECT %I.cron_valid($1)', TG_TABLE_SCHEMA) INTO valid USING NEW.shed_cron;
    IF NOT valid THEN
      RAISE EXCEPTION 'invalid cron expression "%": expected 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first, each within its range', NEW.shed_cron
        USING ERRCODE = 'check_violation';
    END IF;
  END IF;
  IF NEW.shed_tz <> 'UTC' AND (TG_OP = 'INSERT' OR NEW.shed_tz IS DISTINCT FROM OLD.shed_tz) THEN
    EXECUTE format('SELECT %I.time_zone_valid($1)', TG_TABLE_SCHEMA) INTO valid USING NEW.shed_tz;
    IF NOT valid THEN
      RAISE EXCEPTION 'unknown time zone "%": use an IANA name such as UTC or Europe/Berlin', NEW.shed_tz
        USING ERRCODE = 'check_violation';
    END IF;
  END IF;
  -- A cron schedule whose expression or zone changed needs its next slot computed again (by a
  -- node, which does so for a cron schedule without next_start), unless the same statement
  -- sets next_start itself.
  IF TG_OP = 'UPDATE' AND NEW.shed_cron IS NOT NULL
     AND (NEW.shed_cron IS DISTINCT FROM OLD.shed_cron OR NEW.shed_tz IS DISTINCT FROM OLD.shed_tz)
     AND NEW.next_start IS NOT DISTINCT FROM OLD.next_start THEN
    NEW.next_start := NULL;
  END IF;
  -- A schedule the user sets or changes starts a new anchor. The scheduler's own advances run
  -- with pg_tasks.advancing set for their transaction and keep it (only pg-tasks' own writer's
  -- setting counts: anyone may set it).
  IF coalesce(current_setting('pg_tasks.advancing', true), '') <> 'on' OR NOT node_writer() THEN
    IF TG_OP = 'INSERT'
       OR NEW.next_start IS DISTINCT FROM OLD.next_start
       OR NEW.shed_period_id IS DISTINCT FROM OLD.shed_period_id
       OR NEW.shed_period_count IS DISTINCT FROM OLD.shed_period_count
       OR NEW.shed_tz IS DISTINCT FROM OLD.shed_tz THEN
      NEW.shed_anchor := CASE WHEN NEW.shed_period_id IS NULL THEN NULL ELSE NEW.next_start END;
    END IF;
  END IF;
  RETURN NEW;
END;
$function$;

DROP TRIGGER IF EXISTS task_schedule_rules ON {{schema}}.task;
CREATE TRIGGER task_schedule_rules BEFORE INSERT ON {{schema}}.task FOR EACH ROW EXECUTE FUNCTION {{schema}}.task_schedule_rules();
DROP TRIGGER IF EXISTS task_schedule_rules_update ON {{schema}}.task;
CREATE TRIGGER task_schedule_rules_update BEFORE UPDATE ON {{schema}}.task FOR EACH ROW WHEN (((old.next_start IS DISTINCT FROM new.next_start) OR (old.shed_period_id IS DISTINCT FROM new.shed_period_id) OR (old.shed_period_count IS DISTINCT FROM new.shed_period_count) OR (old.shed_cron IS DISTINCT FROM new.shed_cron) OR (old.shed_tz IS DISTINCT FROM new.shed_tz))) EXECUTE FUNCTION {{schema}}.task_schedule_rules();
