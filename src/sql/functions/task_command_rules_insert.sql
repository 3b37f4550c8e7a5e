-- Inserts: once per statement (a bulk insert into groups without an allowlist pays one probe
-- of task_group). An error rolls the whole statement back.
CREATE OR REPLACE FUNCTION {{schema}}.task_command_rules_insert()
 RETURNS trigger
 LANGUAGE plpgsql
 SET search_path TO {{schema}}, pg_catalog, pg_temp
AS $function$
DECLARE
  why text;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM task_group WHERE commands = 'allowlist')
     -- The scheduler's copies of a schedule: refused by the node, if at all, so that one
     -- schedule written before its rule does not stop the others. Only pg-tasks' own writer
     -- (node_writer) is let through by the setting, which anyone may set.
     OR (coalesce(current_setting('pg_tasks.advancing', true), '') = 'on' AND node_writer()) THEN
    RETURN NULL;
  END IF;
  SELECT task_command_error(n) INTO why
    FROM new_rows n JOIN task_group g ON g.id = n.group_id AND g.commands = 'allowlist'
   WHERE task_command_error(n) IS NOT NULL
   ORDER BY n.id
   LIMIT 1;
  IF why IS NOT NULL THEN
    RAISE EXCEPTION '%', why USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NULL;
END;
$function$;

DROP TRIGGER IF EXISTS task_command_rules_insert ON {{schema}}.task;
CREATE TRIGGER task_command_rules_insert AFTER INSERT ON {{schema}}.task REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {{schema}}.task_command_rules_insert();
