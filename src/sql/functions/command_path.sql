-- The one PATH a bare program name (no '/') resolves against, in order: never the writer's,
-- never the node's. Changing it is a new migration.
CREATE OR REPLACE FUNCTION {{schema}}.command_path()
 RETURNS text[]
 LANGUAGE sql
 IMMUTABLE
AS $function$ SELECT ARRAY['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'] $function$;
