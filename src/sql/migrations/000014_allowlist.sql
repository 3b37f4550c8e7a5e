-- Version 14: what may run (issue 13). The rules of task_allowlist (migration 13), read by one
-- matcher, command_check, in two places: a trigger when a task of an allowlisted group is
-- written (a clear error; nothing changes), and the node's claim (a task that slipped past,
-- e.g. written before its rule, ends CF 'refused' without a process). See docs/security.md.

SET LOCAL search_path TO {{schema}}, pg_catalog;

-- The one PATH a bare program name (no '/') resolves against, in order: never the writer's,
-- never the node's. Changing it is a new migration.
CREATE OR REPLACE FUNCTION command_path() RETURNS text[]
LANGUAGE sql IMMUTABLE
AS $$ SELECT ARRAY['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'] $$;

-- Whether rule `rule_program` covers the absolute path p: the same path, or p under the
-- directory (at any depth) when the rule ends in '/'. Textual: no symlink is followed.
CREATE OR REPLACE FUNCTION command_rule_covers(rule_program text, p text) RETURNS boolean
LANGUAGE sql IMMUTABLE
AS $$
  SELECT CASE WHEN right(rule_program, 1) = '/' THEN left(p, length(rule_program)) = rule_program AND length(p) > length(rule_program)
              ELSE p = rule_program END
$$;

-- The matcher. For a command (argv; an element that is exactly %TASK stands for p_task_id, as
-- the node passes it) of group p_group: program, the absolute path to exec, or refusal, why
-- not (one of the two is null).
--   1. The program: an absolute path as written; a bare name, the first d/name of
--      command_path() that a rule covers. Anything else (a relative path with '/', a '.' or
--      '..' segment, '//') is refused whatever the rules say.
--   2. The arguments: some rule that covers the program has no args_pattern, or one that
--      every argument (argv[2..]) matches.
-- Rules are read on each call, so a change applies to the next write or claim.
CREATE OR REPLACE FUNCTION command_check(p_group int, p_command text[], p_task_id bigint DEFAULT NULL,
                                         OUT program text, OUT refusal text)
LANGUAGE plpgsql STABLE
SET search_path = {{schema}}, pg_catalog
AS $$
DECLARE
  name text;
  exe text;
  args text[];
  dir text;
  bad int;
BEGIN
  IF coalesce(cardinality(p_command), 0) = 0 THEN
    refusal := 'the command is empty';
    RETURN;
  END IF;
  args := ARRAY(SELECT CASE WHEN a = '%TASK' THEN coalesce(p_task_id::text, a) ELSE a END
                  FROM unnest(p_command) WITH ORDINALITY AS c(a, n) ORDER BY n);
  name := args[1];
  args := args[2:];
  IF name IS NULL OR name = '' THEN
    refusal := 'the program (the first element of the command) is empty';
    RETURN;
  END IF;
  IF position('/' IN name) > 0 THEN
    IF left(name, 1) <> '/' THEN
      refusal := format('program "%s" is a relative path: give an absolute path, or a bare name (looked up in %s)',
                        left(name, 200), array_to_string(command_path(), ':'));
      RETURN;
    END IF;
    IF name ~ '(^|/)\.\.?(/|$)' OR name ~ '//' THEN
      refusal := format('program "%s" has a "." or ".." segment or "//": write its plain absolute path', left(name, 200));
      RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM task_allowlist r WHERE r.group_id = p_group AND command_rule_covers(r.program, name)) THEN
      exe := name;
    END IF;
  ELSIF name IN ('.', '..') THEN
    refusal := format('program "%s" is not a program name', name);
    RETURN;
  ELSE
    FOREACH dir IN ARRAY command_path() LOOP
      IF EXISTS (SELECT 1 FROM task_allowlist r WHERE r.group_id = p_group AND command_rule_covers(r.program, dir || '/' || name)) THEN
        exe := dir || '/' || name;
        EXIT;
      END IF;
    END LOOP;
  END IF;
  IF exe IS NULL THEN
    refusal := CASE WHEN left(name, 1) = '/'
                    THEN format('program "%s" is not allowed in group %s: no rule of task_allowlist covers it', left(name, 200), p_group)
                    ELSE format('program "%s" is not allowed in group %s: no rule of task_allowlist covers it in any directory of %s',
                                left(name, 200), p_group, array_to_string(command_path(), ':')) END;
    RETURN;
  END IF;
  IF EXISTS (SELECT 1 FROM task_allowlist r
              WHERE r.group_id = p_group AND command_rule_covers(r.program, exe)
                AND (r.args_pattern IS NULL
                     OR NOT EXISTS (SELECT 1 FROM unnest(args) a WHERE a IS NULL OR a !~ r.args_pattern))) THEN
    program := exe;
    RETURN;
  END IF;
  -- Refused for an argument: name the first one that no covering rule's pattern accepts.
  SELECT min(c.n) INTO bad
    FROM unnest(args) WITH ORDINALITY AS c(a, n)
   WHERE NOT EXISTS (SELECT 1 FROM task_allowlist r
                      WHERE r.group_id = p_group AND command_rule_covers(r.program, exe)
                        AND c.a IS NOT NULL AND c.a ~ r.args_pattern);
  refusal := format('argument %s of %s (%s) does not match the args_pattern of any rule of group %s that allows the program',
                    coalesce(bad, 1) + 1, exe,
                    CASE WHEN args[coalesce(bad, 1)] IS NULL THEN 'NULL' ELSE '"' || left(args[coalesce(bad, 1)], 100) || '"' END,
                    p_group);
END;
$$;

-- The two halves, for SQL users and the claim.
CREATE OR REPLACE FUNCTION command_allowed(p_group int, p_command text[], p_task_id bigint DEFAULT NULL) RETURNS text
LANGUAGE sql STABLE
SET search_path = {{schema}}, pg_catalog
AS $$ SELECT (command_check(p_group, p_command, p_task_id)).program $$;

CREATE OR REPLACE FUNCTION command_refusal(p_group int, p_command text[], p_task_id bigint DEFAULT NULL) RETURNS text
LANGUAGE sql STABLE
SET search_path = {{schema}}, pg_catalog
AS $$ SELECT (command_check(p_group, p_command, p_task_id)).refusal $$;

-- A rule is checked when it is written: a pattern PostgreSQL can't compile would otherwise
-- only fail later, in every claim of the group.
CREATE OR REPLACE FUNCTION task_allowlist_rules() RETURNS trigger
LANGUAGE plpgsql
SET search_path = {{schema}}, pg_catalog
AS $$
BEGIN
  IF NEW.args_pattern IS NOT NULL THEN
    BEGIN
      PERFORM '' ~ NEW.args_pattern;
    EXCEPTION WHEN invalid_regular_expression THEN
      RAISE EXCEPTION 'invalid args_pattern %: %', quote_literal(NEW.args_pattern), SQLERRM
        USING ERRCODE = 'invalid_regular_expression';
    END;
  END IF;
  RETURN NEW;
END;
$$;
DROP TRIGGER IF EXISTS task_allowlist_rules ON task_allowlist;
CREATE TRIGGER task_allowlist_rules BEFORE INSERT OR UPDATE ON task_allowlist
  FOR EACH ROW EXECUTE FUNCTION task_allowlist_rules();

-- The check when a task is written, for a group whose commands = 'allowlist'.
CREATE OR REPLACE FUNCTION task_command_error(t task) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = {{schema}}, pg_catalog
AS $$
DECLARE
  why text := command_refusal(t.group_id, CAST(t.command AS text[]), t.id);
BEGIN
  IF why IS NULL THEN
    RETURN NULL;
  END IF;
  RETURN format('%s (group %s has commands = ''allowlist''). An admin allows a program with: pg-tasks allow %s /absolute/path (or /directory/) [--args REGEX]; '
                'or INSERT INTO %s.task_allowlist (group_id, program, args_pattern) VALUES (%s, ''/absolute/path'', NULL)',
                why, t.group_id, t.group_id, quote_ident(current_schema()), t.group_id);
END;
$$;

-- Inserts: once per statement (a bulk insert into groups without an allowlist pays one probe
-- of task_group). An error rolls the whole statement back.
CREATE OR REPLACE FUNCTION task_command_rules_insert() RETURNS trigger
LANGUAGE plpgsql
SET search_path = {{schema}}, pg_catalog
AS $$
DECLARE
  why text;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM task_group WHERE commands = 'allowlist')
     -- The scheduler's copies of a schedule: refused by the node, if at all, so that one
     -- schedule written before its rule does not stop the others.
     OR coalesce(current_setting('pg_tasks.advancing', true), '') = 'on' THEN
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
$$;
DROP TRIGGER IF EXISTS task_command_rules_insert ON task;
CREATE TRIGGER task_command_rules_insert AFTER INSERT ON task
  REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION task_command_rules_insert();

-- Updates: a row whose command or group changes, or that a user queues (AW from DR or an
-- ended state). Not the writes pg-tasks makes itself, which must not fail for one task (a
-- batch of run ends, a schedule, a recovery would stop for all): a retry (AW from AE), the
-- scheduler's (pg_tasks.advancing) and a recovery's (pg_tasks.recovering) re-queues, the
-- queueing of a schedule's waiting copy (shed_parent_id). The node refuses such a task when it
-- claims it.
CREATE OR REPLACE FUNCTION task_command_rules_update() RETURNS trigger
LANGUAGE plpgsql
SET search_path = {{schema}}, pg_catalog
AS $$
DECLARE
  why text;
BEGIN
  IF coalesce(current_setting('pg_tasks.advancing', true), '') = 'on'
     OR coalesce(current_setting('pg_tasks.recovering', true), '') = 'on'
     OR NOT EXISTS (SELECT 1 FROM task_group g WHERE g.id = NEW.group_id AND g.commands = 'allowlist') THEN
    RETURN NEW;
  END IF;
  why := task_command_error(NEW);
  IF why IS NOT NULL THEN
    RAISE EXCEPTION '%', why USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NEW;
END;
$$;
DROP TRIGGER IF EXISTS task_command_rules_update ON task;
CREATE TRIGGER task_command_rules_update BEFORE UPDATE ON task
  FOR EACH ROW
  WHEN (OLD.command IS DISTINCT FROM NEW.command OR OLD.group_id IS DISTINCT FROM NEW.group_id
        OR (NEW.state_id = 'AW' AND OLD.state_id NOT IN ('AW', 'AE', 'AC') AND NEW.shed_parent_id IS NULL))
  EXECUTE FUNCTION task_command_rules_update();
