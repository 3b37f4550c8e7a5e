-- Whether rule r allows the arguments args (argv[2..]) of program exe: null if it does, else
-- why not, naming the first argument it refuses. A rule with neither pattern allows any
-- arguments. Otherwise argument i must match args_patterns[i] where there is one, else
-- args_pattern (with no args_pattern, an argument past the last positional pattern is refused:
-- fewer arguments than patterns are fine). An argument with a '..' segment ('..' between
-- slashes, at either end, or after '=') is refused unless the rule says allow_dotdot; one with a
-- '/' must match as written and in its normal form (command_arg_normal).
CREATE OR REPLACE FUNCTION {{schema}}.command_args_refusal(r {{schema}}.task_allowlist, exe text, args text[])
 RETURNS text
 LANGUAGE plpgsql
 IMMUTABLE
 SET search_path TO {{schema}}, pg_catalog, pg_temp
AS $function$
DECLARE
  positional int := coalesce(cardinality(r.args_patterns), 0);
  a text;
  pattern text;
  which text;
  normal text;
BEGIN
  IF r.args_pattern IS NULL AND r.args_patterns IS NULL THEN
    RETURN NULL;
  END IF;
  FOR i IN 1 .. coalesce(cardinality(args), 0) LOOP
    a := args[i];
    IF i <= positional THEN
      pattern := r.args_patterns[i];
      which := format('args_patterns[%s]', i);
    ELSE
      pattern := r.args_pattern;
      which := 'args_pattern';
    END IF;
    IF pattern IS NULL THEN
      RETURN format('argument %s of %s (%s) is past the %s positional patterns (args_patterns) of rule %s of group %s, which has no args_pattern for the rest',
                    i + 1, exe, CASE WHEN a IS NULL THEN 'NULL' ELSE '"' || left(a, 100) || '"' END, positional, r.id, r.group_id);
    END IF;
    IF a IS NULL THEN
      RETURN format('argument %s of %s is NULL', i + 1, exe);
    END IF;
    IF NOT r.allow_dotdot AND a ~ '(^|[/=])\.\.(/|$)' THEN
      RETURN format('argument %s of %s ("%s") has a ".." segment, which rule %s of group %s does not allow (allow_dotdot)',
                    i + 1, exe, left(a, 100), r.id, r.group_id);
    END IF;
    normal := command_arg_normal(a);
    IF a !~ pattern OR normal !~ pattern THEN
      RETURN format('argument %s of %s ("%s"%s) does not match the %s of rule %s of group %s (%s)',
                    i + 1, exe, left(a, 100),
                    CASE WHEN normal = a OR a !~ pattern THEN '' ELSE ', normally "' || left(normal, 100) || '"' END,
                    which, r.id, r.group_id, left(pattern, 200));
    END IF;
  END LOOP;
  RETURN NULL;
END;
$function$;
