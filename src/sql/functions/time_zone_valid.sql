-- IANA zone names only: PostgreSQL also accepts abbreviations (PST) and POSIX offsets (+3),
-- which the node's zone database (ICU, through luxon) does not. A name with a slash is a zone
-- name to PostgreSQL, and AT TIME ZONE checks it in microseconds; the rare names without one
-- (UTC, EST5EDT, Japan) are looked up in pg_timezone_names, which takes ~80 ms. A server
-- built with the system's zone files also knows posix/..., right/..., localtime and
-- posixrules, and every server knows Factory: none of them is an IANA zone to ICU.
CREATE OR REPLACE FUNCTION {{schema}}.time_zone_valid(tz text)
 RETURNS boolean
 LANGUAGE plpgsql
 STABLE
 SET search_path TO {{schema}}, pg_catalog, pg_temp
AS $function$
BEGIN
  IF tz !~ '^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$'
     OR tz ~* '^(posix|right)/'
     OR lower(tz) IN ('factory', 'localtime', 'posixrules') THEN
    RETURN false;
  END IF;
  IF position('/' IN tz) = 0 THEN
    RETURN EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = tz);
  END IF;
  PERFORM now() AT TIME ZONE tz;
  RETURN true;
EXCEPTION WHEN invalid_parameter_value THEN
  RETURN false;
END;
$function$;
