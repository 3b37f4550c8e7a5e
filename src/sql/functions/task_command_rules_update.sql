-- Updates: a row whose command or group changes, or that a user queues (AW from DR or an
-- ended state). Not the writes pg-tasks makes itself, which must not fail for one task (a
-- batch of run ends, a schedule, a recovery would stop for all): a retry (AW from AE), the
-- scheduler's (pg_tasks.advancing) and a recovery's (pg_tasks.recovering) re-queues, the
-- queueing of a schedule's waiting copy (shed_parent_id). The node refuses such a task when it
-- claims it. The settings count only for pg-tasks' own writer (node_writer): anyone may set them.
CREATE OR REPLACE FUNCTION {{schema}}.task_command_rules_update()
 RETURNS trigger
 LANGUAGE plpgsql
 SET search_path TO {{schema}}, pg_catalog, pg_temp
AS $function$
DECLARE
  why text;
BEGIN
  IF ((coalesce(current_setting('pg_tasks.advancing', true), '') = 'on'
       OR coalesce(current_setting('pg_tasks.recovering', true), '') = 'on') AND node_writer())
     OR NOT EXISTS (SELECT 1 FROM task_group g WHERE g.id = NEW.group_id AND g.commands = 'allowlist') THEN
    RETURN NEW;
  END IF;
  why := task_command_error(NEW);
  IF why IS NOT NULL THEN
    RAISE EXCEPTION '%', why USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NEW;
END;
$function$;

DROP TRIGGER IF EXISTS task_command_rules_update ON {{schema}}.task;
CREATE TRIGGER task_command_rules_update BEFORE UPDATE ON {{schema}}.task FOR EACH ROW WHEN (((old.command IS DISTINCT FROM new.command) OR (old.group_id IS DISTINCT FROM new.group_id) OR ((new.state_id = 'AW'::bpchar) AND (old.state_id <> ALL (ARRAY['AW'::bpchar, 'AE'::bpchar, 'AC'::bpchar])) AND (new.shed_parent_id IS NULL)))) EXECUTE FUNCTION {{schema}}.task_command_rules_update();
