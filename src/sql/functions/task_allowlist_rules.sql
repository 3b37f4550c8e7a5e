-- A rule is checked when it is written: a pattern PostgreSQL can't compile would otherwise
-- only fail later, in every claim of the group.
CREATE OR REPLACE FUNCTION {{schema}}.task_allowlist_rules()
 RETURNS trigger
 LANGUAGE plpgsql
 SET search_path TO {{schema}}, pg_catalog, pg_temp
AS $function$
DECLARE
  pattern text;
  which text;
BEGIN
  FOR i IN 0 .. coalesce(cardinality(NEW.args_patterns), 0) LOOP
    IF i = 0 THEN
      pattern := NEW.args_pattern;
      which := 'args_pattern';
    ELSE
      pattern := NEW.args_patterns[i];
      which := format('args_patterns[%s]', i);
    END IF;
    CONTINUE WHEN pattern IS NULL;
    BEGIN
      PERFORM '' ~ pattern;
    EXCEPTION WHEN invalid_regular_expression THEN
      RAISE EXCEPTION 'invalid % %: %', which, quote_literal(pattern), SQLERRM
        USING ERRCODE = 'invalid_regular_expression';
    END;
  END LOOP;
  RETURN NEW;
END;
$function$;

DROP TRIGGER IF EXISTS task_allowlist_rules ON {{schema}}.task_allowlist;
CREATE TRIGGER task_allowlist_rules BEFORE INSERT OR UPDATE ON {{schema}}.task_allowlist FOR EACH ROW EXECUTE FUNCTION {{schema}}.task_allowlist_rules();
