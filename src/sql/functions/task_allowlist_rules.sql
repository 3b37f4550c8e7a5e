-- A rule is checked when it is written: a pattern PostgreSQL can't compile would otherwise
-- only fail later, in every claim of the group.
CREATE OR REPLACE FUNCTION {{schema}}.task_allowlist_rules()
 RETURNS trigger
 LANGUAGE plpgsql
 SET search_path TO {{schema}}, pg_catalog
AS $function$
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
$function$;

DROP TRIGGER IF EXISTS task_allowlist_rules ON {{schema}}.task_allowlist;
CREATE TRIGGER task_allowlist_rules BEFORE INSERT OR UPDATE ON {{schema}}.task_allowlist FOR EACH ROW EXECUTE FUNCTION {{schema}}.task_allowlist_rules();
