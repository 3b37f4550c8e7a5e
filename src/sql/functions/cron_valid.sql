CREATE OR REPLACE FUNCTION {{schema}}.cron_valid(expr text)
 RETURNS boolean
 LANGUAGE plpgsql
 IMMUTABLE
 SET search_path TO {{schema}}, pg_catalog, pg_temp
AS $function$
DECLARE
  f text[] := regexp_split_to_array(btrim(expr), '\s+');
  months text[] := ARRAY['JAN','FEB','MAR','APR','MAY','JUN','JUL','AUG','SEP','OCT','NOV','DEC'];
  days text[] := ARRAY['SUN','MON','TUE','WED','THU','FRI','SAT'];
BEGIN
  IF cardinality(f) = 5 THEN
    f := ARRAY['0'] || f;
  ELSIF cardinality(f) <> 6 THEN
    RETURN false;
  END IF;
  RETURN cron_field_valid(f[1], 0, 59, NULL, NULL)
     AND cron_field_valid(f[2], 0, 59, NULL, NULL)
     AND cron_field_valid(f[3], 0, 23, NULL, NULL)
     AND cron_field_valid(f[4], 1, 31, NULL, '^(\?|L)$')
     AND cron_field_valid(f[5], 1, 12, months, NULL)
     AND cron_field_valid(f[6], 0, 7, days, '^(\?|[0-7]L|[0-7]#[1-5])$');
END;
$function$;
