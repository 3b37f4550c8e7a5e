-- When written: the list must name existing tasks, other than the task itself, and (when it
-- changes on an existing task) must not close a cycle. (A task inserted can't be named by
-- others yet, so only an update can close one.) A task that waits starts blocked; the
-- statement's end (task_deps_release) counts what is left.
CREATE OR REPLACE FUNCTION {{schema}}.task_deps_rules()
 RETURNS trigger
 LANGUAGE plpgsql
 SET search_path TO {{schema}}, pg_catalog, pg_temp
AS $function$
DECLARE
  missing bigint;
  cycle_at bigint;
BEGIN
  IF NEW.depends_on IS NOT NULL AND (TG_OP = 'INSERT' OR NEW.depends_on IS DISTINCT FROM OLD.depends_on) THEN
    IF array_position(NEW.depends_on, NULL) IS NOT NULL THEN
      RAISE EXCEPTION 'depends_on of a task can''t hold NULL' USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.id = ANY (NEW.depends_on) THEN
      RAISE EXCEPTION 'task % can''t depend on itself', NEW.id USING ERRCODE = 'check_violation';
    END IF;
    SELECT d INTO missing FROM unnest(NEW.depends_on) AS d
     WHERE NOT EXISTS (SELECT 1 FROM task p WHERE p.id = d) LIMIT 1;
    IF missing IS NOT NULL THEN
      RAISE EXCEPTION 'depends_on names task %, which does not exist', missing
        USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF TG_OP = 'UPDATE' THEN
      -- A cycle: the task is among what its new prerequisites depend on, transitively.
      WITH RECURSIVE up(id) AS (
        SELECT unnest(NEW.depends_on)
        UNION
        SELECT unnest(p.depends_on) FROM task p JOIN up ON p.id = up.id WHERE p.depends_on IS NOT NULL
      )
      SELECT id INTO cycle_at FROM up WHERE id = NEW.id LIMIT 1;
      IF cycle_at IS NOT NULL THEN
        RAISE EXCEPTION 'task % can''t depend on %: that would make a cycle (they depend on task %)',
          NEW.id, array_to_string(NEW.depends_on, ', '), NEW.id USING ERRCODE = 'check_violation';
      END IF;
    END IF;
  END IF;
  -- Entering AW or DR, or given prerequisites: blocked until the statement's end counts them.
  IF NEW.depends_on IS NOT NULL AND NEW.state_id IN ('AW', 'DR')
     AND (TG_OP = 'INSERT' OR NEW.state_id IS DISTINCT FROM OLD.state_id OR NEW.depends_on IS DISTINCT FROM OLD.depends_on) THEN
    NEW.deps_left := cardinality(NEW.depends_on);
  ELSIF NEW.depends_on IS NULL THEN
    NEW.deps_left := 0;
  END IF;
  RETURN NEW;
END;
$function$;

DROP TRIGGER IF EXISTS task_deps_rules_insert ON {{schema}}.task;
CREATE TRIGGER task_deps_rules_insert BEFORE INSERT ON {{schema}}.task FOR EACH ROW WHEN ((new.depends_on IS NOT NULL)) EXECUTE FUNCTION {{schema}}.task_deps_rules();
DROP TRIGGER IF EXISTS task_deps_rules_update ON {{schema}}.task;
CREATE TRIGGER task_deps_rules_update BEFORE UPDATE ON {{schema}}.task FOR EACH ROW WHEN (((new.depends_on IS DISTINCT FROM old.depends_on) OR ((new.depends_on IS NOT NULL) AND (new.state_id IS DISTINCT FROM old.state_id)))) EXECUTE FUNCTION {{schema}}.task_deps_rules();
