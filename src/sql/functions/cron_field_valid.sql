-- A structural check of a cron expression: 5 or 6 fields, each a list of *, numbers, ranges,
-- steps or names within the field's range (L, # and ? where the node's cron library allows
-- them; it has no W and no L-n). The node computes the slots with that library; this refuses
-- at write time what it would refuse.
CREATE OR REPLACE FUNCTION {{schema}}.cron_field_valid(field text, lo integer, hi integer, names text[], extra text)
 RETURNS boolean
 LANGUAGE plpgsql
 IMMUTABLE
AS $function$
DECLARE
  part text;
  m text[];
  a int;
  b int;
BEGIN
  FOREACH part IN ARRAY string_to_array(upper(field), ',') LOOP
    IF part = '' THEN RETURN false; END IF;
    -- Names become their numbers (JAN = 1 or SUN = 0, by position in names + lo).
    IF names IS NOT NULL THEN
      FOR i IN 1 .. cardinality(names) LOOP
        part := replace(part, names[i], (lo + i - 1)::text);
      END LOOP;
    END IF;
    IF extra IS NOT NULL AND part ~ extra THEN CONTINUE; END IF;
    -- At most 9 digits: longer numbers are out of every range, and would overflow int.
    m := regexp_match(part, '^(\*|\d{1,9})(?:-(\d{1,9}))?(?:/(\d{1,9}))?$');
    IF m IS NULL THEN RETURN false; END IF;
    IF m[1] <> '*' THEN
      a := m[1]::int;
      IF a < lo OR a > hi THEN RETURN false; END IF;
      IF m[2] IS NOT NULL THEN
        b := m[2]::int;
        IF b < lo OR b > hi OR b < a THEN RETURN false; END IF;
      END IF;
    ELSIF m[2] IS NOT NULL THEN
      RETURN false;
    END IF;
    IF m[3] IS NOT NULL AND m[3]::int < 1 THEN RETURN false; END IF;
  END LOOP;
  RETURN true;
END;
$function$;
