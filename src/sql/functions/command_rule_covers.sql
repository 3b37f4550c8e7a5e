-- Whether rule `rule_program` covers the absolute path p: the same path, or p under the
-- directory (at any depth) when the rule ends in '/'. Textual: no symlink is followed.
CREATE OR REPLACE FUNCTION {{schema}}.command_rule_covers(rule_program text, p text)
 RETURNS boolean
 LANGUAGE sql
 IMMUTABLE
AS $function$
  SELECT CASE WHEN right(rule_program, 1) = '/' THEN left(p, length(rule_program)) = rule_program AND length(p) > length(rule_program)
              ELSE p = rule_program END
$function$;
