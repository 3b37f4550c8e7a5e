-- The check when a task is written, for a group whose commands = 'allowlist'.
CREATE OR REPLACE FUNCTION {{schema}}.task_command_error(t {{schema}}.task)
 RETURNS text
 LANGUAGE plpgsql
 STABLE
 SET search_path TO {{schema}}, pg_catalog, pg_temp
AS $function$
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
$function$;
