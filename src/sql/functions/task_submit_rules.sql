-- Who may submit to a group (task_group.submit_roles, migration 20): with null, any role that
-- may write task; otherwise members of one of those roles (the role writing the row,
-- current_user), and pg-tasks' own writer (node_writer: the node's schedule copies, an admin).
-- Checked when tasks are inserted (once per statement: one probe of task_group while no group
-- names roles) and when an update moves a task into another group. A role that does not exist
-- has no members.
CREATE OR REPLACE FUNCTION {{schema}}.task_submit_rules()
 RETURNS trigger
 LANGUAGE plpgsql
 SET search_path TO {{schema}}, pg_catalog, pg_temp
AS $function$
DECLARE
  g record;
BEGIN
  IF TG_OP = 'INSERT' THEN
    IF NOT EXISTS (SELECT 1 FROM task_group WHERE submit_roles IS NOT NULL) THEN
      RETURN NULL;
    END IF;
    SELECT tg.id, tg.submit_roles INTO g
      FROM task_group tg
     WHERE tg.submit_roles IS NOT NULL AND tg.id IN (SELECT n.group_id FROM new_rows n)
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r
                        WHERE r.rolname = ANY (tg.submit_roles) AND pg_has_role(r.oid, 'MEMBER'))
     ORDER BY tg.id
     LIMIT 1;
  ELSE
    SELECT tg.id, tg.submit_roles INTO g
      FROM task_group tg
     WHERE tg.id = NEW.group_id AND tg.submit_roles IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r
                        WHERE r.rolname = ANY (tg.submit_roles) AND pg_has_role(r.oid, 'MEMBER'));
  END IF;
  IF FOUND AND NOT node_writer() THEN
    RAISE EXCEPTION 'group % takes tasks only from members of %: % is not one (task_group.submit_roles; an admin may GRANT one of them)',
      g.id, CASE WHEN cardinality(g.submit_roles) = 0 THEN 'no role' ELSE array_to_string(g.submit_roles, ', ') END, current_user
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NEW;
END;
$function$;

DROP TRIGGER IF EXISTS task_submit_rules_insert ON {{schema}}.task;
CREATE TRIGGER task_submit_rules_insert AFTER INSERT ON {{schema}}.task REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {{schema}}.task_submit_rules();
DROP TRIGGER IF EXISTS task_submit_rules_update ON {{schema}}.task;
CREATE TRIGGER task_submit_rules_update BEFORE UPDATE ON {{schema}}.task FOR EACH ROW WHEN ((old.group_id IS DISTINCT FROM new.group_id)) EXECUTE FUNCTION {{schema}}.task_submit_rules();
