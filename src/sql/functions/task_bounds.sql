-- The sizes a task may have (docs/security.md, "Bounded input"), checked when a row is
-- written, before the triggers that read its depends_on (the names sort after this one), so
-- an oversized value is refused in one probe of its size, not after a walk through it (a
-- depends_on of 3 000 000 ids used to be stored after 26.8 s of existence checks):
--   depends_on  at most 1 000 ids, and a chain of prerequisites at most 1 000 deep (a task
--               with no prerequisite is 0 deep; one that depends on it, 1 ...). Every
--               prerequisite counts, ended or not; on an update, so do the waiting tasks below.
--   command     at most 4 096 elements and 1 MiB in all (Linux's ARG_MAX is 2 MiB for the
--               arguments and the environment together); each element under 128 KiB, at most
--               131 071 bytes (Linux's MAX_ARG_STRLEN, 131 072, counts the terminating NUL)
--   params      at most 131 055 bytes as JSON text: it reaches the process as one variable,
--               PG_TASKS_PARAMS=..., which Linux also caps at 131 072 bytes with its NUL
--   cwd         at most 4 095 bytes (PATH_MAX, 4 096, counts the NUL)
-- A limit past what the kernel takes would only move the refusal from the writer's statement
-- to the run (spawn_error E2BIG). A schedule's copies (shed_parent_id) copy what was checked
-- when their parent was written, and are not checked again: a parent written before these
-- limits must not stop its schedule's other slots.
CREATE OR REPLACE FUNCTION {{schema}}.task_bounds()
 RETURNS trigger
 LANGUAGE plpgsql
 SET search_path TO {{schema}}, pg_catalog, pg_temp
AS $function$
DECLARE
  max_deps CONSTANT int := 1000;
  max_depth CONSTANT int := 1000;
  max_elements CONSTANT int := 4096;
  max_element_bytes CONSTANT int := 131071;
  max_command_bytes CONSTANT int := 1048576;
  max_params_bytes CONSTANT int := 131055;
  max_cwd_bytes CONSTANT int := 4095;
  n bigint;
  bytes bigint;
  depth int;
  below int;
BEGIN
  IF NEW.depends_on IS NOT NULL AND (TG_OP = 'INSERT' OR NEW.depends_on IS DISTINCT FROM OLD.depends_on) THEN
    n := cardinality(NEW.depends_on);
    IF n > max_deps THEN
      RAISE EXCEPTION 'depends_on names % tasks: at most %', n, max_deps USING ERRCODE = 'check_violation';
    END IF;
    -- The longest chain above it: each level's prerequisites, until none is left or one is
    -- past the limit. A level holds each task once, so a diamond costs no more than a chain.
    -- (A cycle through the task itself is not followed: task_deps_rules refuses it, by name.)
    -- Prerequisites with none of their own (the usual case) cost one probe, not the walk.
    IF NOT EXISTS (SELECT 1 FROM {{schema}}.task p WHERE p.id = ANY (NEW.depends_on) AND p.depends_on IS NOT NULL) THEN
      depth := 1;
    ELSE
      WITH RECURSIVE up(id, lvl) AS (
        SELECT d, 1 FROM unnest(NEW.depends_on) AS d
        UNION
        SELECT pd, up.lvl + 1
          FROM up JOIN {{schema}}.task p ON p.id = up.id
          CROSS JOIN LATERAL unnest(p.depends_on) AS pd
         WHERE p.depends_on IS NOT NULL AND up.lvl <= max_depth AND p.id <> NEW.id
      )
      SELECT max(lvl) INTO depth FROM up;
    END IF;
    below := 0;
    -- An update may hang a chain of waiting tasks below it under a longer one.
    IF TG_OP = 'UPDATE' AND depth <= max_depth THEN
      WITH RECURSIVE down(id, lvl) AS (
        SELECT NEW.id, 0
        UNION
        SELECT d.id, down.lvl + 1
          FROM down JOIN {{schema}}.task d ON d.depends_on && ARRAY[down.id]
         WHERE d.depends_on IS NOT NULL AND d.state_id IN ('AW', 'DR') AND d.id <> NEW.id
           AND depth + down.lvl <= max_depth
      )
      SELECT max(lvl) INTO below FROM down;
    END IF;
    IF depth + below > max_depth THEN
      RAISE EXCEPTION 'a chain of prerequisites may be at most % deep: this depends_on makes it deeper', max_depth
        USING ERRCODE = 'check_violation';
    END IF;
  END IF;
  IF TG_OP = 'INSERT' AND NEW.shed_parent_id IS NOT NULL THEN
    RETURN NEW;
  END IF;
  IF TG_OP = 'INSERT' OR NEW.command IS DISTINCT FROM OLD.command THEN
    n := cardinality(NEW.command);
    IF n > max_elements THEN
      RAISE EXCEPTION 'command has % elements: at most %', n, max_elements USING ERRCODE = 'check_violation';
    END IF;
    SELECT i, octet_length(e) INTO n, bytes FROM unnest(NEW.command) WITH ORDINALITY AS c(e, i)
     WHERE octet_length(e) > max_element_bytes LIMIT 1;
    IF n IS NOT NULL THEN
      RAISE EXCEPTION 'command element % is % bytes: at most % (Linux''s limit for one argument)', n, bytes, max_element_bytes
        USING ERRCODE = 'check_violation';
    END IF;
    bytes := (SELECT sum(octet_length(e)) FROM unnest(NEW.command) AS e);
    IF bytes > max_command_bytes THEN
      RAISE EXCEPTION 'command is % bytes in all: at most %', bytes, max_command_bytes USING ERRCODE = 'check_violation';
    END IF;
  END IF;
  IF NEW.params IS NOT NULL AND (TG_OP = 'INSERT' OR NEW.params IS DISTINCT FROM OLD.params) THEN
    bytes := octet_length(NEW.params::text);
    IF bytes > max_params_bytes THEN
      RAISE EXCEPTION 'params is % bytes as JSON: at most % (it reaches the process as one environment variable)', bytes, max_params_bytes
        USING ERRCODE = 'check_violation';
    END IF;
  END IF;
  IF octet_length(NEW.cwd) > max_cwd_bytes AND (TG_OP = 'INSERT' OR NEW.cwd IS DISTINCT FROM OLD.cwd) THEN
    RAISE EXCEPTION 'cwd is % bytes: at most %', octet_length(NEW.cwd), max_cwd_bytes USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END;
$function$;

DROP TRIGGER IF EXISTS task_bounds_insert ON {{schema}}.task;
CREATE TRIGGER task_bounds_insert BEFORE INSERT ON {{schema}}.task FOR EACH ROW EXECUTE FUNCTION {{schema}}.task_bounds();
DROP TRIGGER IF EXISTS task_bounds_update ON {{schema}}.task;
CREATE TRIGGER task_bounds_update BEFORE UPDATE OF command, params, cwd, depends_on ON {{schema}}.task FOR EACH ROW EXECUTE FUNCTION {{schema}}.task_bounds();
