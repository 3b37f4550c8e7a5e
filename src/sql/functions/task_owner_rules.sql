-- Who owns a task (docs/security.md, "Owners"): the role that inserted it, current_user by
-- default. Another owner, written on insert or by an update, only from a user who sees and
-- changes every task: one the task_all policy applies to (an operator, an admin, a node, as
-- src/sql/roles.sql creates it), or one row-level security does not apply to (the tables'
-- owner, a superuser; everyone while the roles are not set up). A node's scheduled copies
-- keep their parent's owner this way. The triggers fire only when the owner written is not
-- the writer, so the inserts of a submitter pay nothing.
CREATE OR REPLACE FUNCTION {{schema}}.task_owner_rules()
 RETURNS trigger
 LANGUAGE plpgsql
 SET search_path TO {{schema}}, pg_catalog, pg_temp
AS $function$
BEGIN
  IF pg_catalog.row_security_active(TG_RELID) AND NOT EXISTS (
       SELECT 1 FROM pg_catalog.pg_policy p, pg_catalog.unnest(p.polroles) AS r(oid)
        WHERE p.polrelid = TG_RELID AND p.polname = 'task_all'
          AND (r.oid = 0 OR pg_catalog.pg_has_role(current_user, r.oid, 'USAGE'))) THEN
    RAISE EXCEPTION 'can''t give a task to %: a task belongs to the role that writes it (%); only an operator or admin may set another owner',
      coalesce(pg_catalog.quote_ident(NEW.owner), 'no one (NULL)'), current_user
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NEW;
END;
$function$;

DROP TRIGGER IF EXISTS task_owner_rules_insert ON {{schema}}.task;
CREATE TRIGGER task_owner_rules_insert BEFORE INSERT ON {{schema}}.task FOR EACH ROW WHEN ((new.owner IS DISTINCT FROM CURRENT_USER)) EXECUTE FUNCTION {{schema}}.task_owner_rules();
DROP TRIGGER IF EXISTS task_owner_rules_update ON {{schema}}.task;
CREATE TRIGGER task_owner_rules_update BEFORE UPDATE ON {{schema}}.task FOR EACH ROW WHEN (((old.owner IS DISTINCT FROM new.owner) AND (new.owner IS DISTINCT FROM CURRENT_USER))) EXECUTE FUNCTION {{schema}}.task_owner_rules();
