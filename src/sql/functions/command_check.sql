-- The matcher. For a command (argv; an element that is exactly %TASK stands for p_task_id, as
-- the node passes it) of group p_group: program, the absolute path to exec, or refusal, why
-- not (one of the two is null).
--   1. The program: an absolute path as written; a bare name, the first d/name of
--      command_path() that a rule covers. Anything else (a relative path with '/', a '.' or
--      '..' segment, '//') is refused whatever the rules say.
--   2. The arguments: some rule that covers the program allows them (command_args_refusal:
--      its args_pattern, its per-position args_patterns, '..' segments only with allow_dotdot).
-- Rules are read on each call, so a change applies to the next write or claim.
CREATE OR REPLACE FUNCTION {{schema}}.command_check(p_group integer, p_command text[], p_task_id bigint DEFAULT NULL::bigint, OUT program text, OUT refusal text)
 RETURNS record
 LANGUAGE plpgsql
 STABLE
 SET search_path TO {{schema}}, pg_catalog, pg_temp
AS $function$
DECLARE
  name text;
  exe text;
  args text[];
  dir text;
  rule task_allowlist;
  why text;
  refused int := 0;
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
  -- The arguments: allowed by some rule that covers the program; else the first such rule's
  -- reason (by id).
  FOR rule IN SELECT * FROM task_allowlist r WHERE r.group_id = p_group AND command_rule_covers(r.program, exe) ORDER BY r.id LOOP
    why := command_args_refusal(rule, exe, args);
    IF why IS NULL THEN
      program := exe;
      refusal := NULL;
      RETURN;
    END IF;
    refused := refused + 1;
    refusal := coalesce(refusal, why);
  END LOOP;
  IF refused > 1 THEN
    refusal := format('%s; %s more rule(s) of group %s allow the program and refuse these arguments too', refusal, refused - 1, p_group);
  END IF;
END;
$function$;
