-- A clone schedule's copy's unique_key (migration 24): the schedule's shed_unique_key with each
-- {{slot}} replaced by the slot the copy is for, in UTC to the second (2026-12-07T03:00:00Z),
-- so that a template like 'report-{{slot}}' gives one key per slot. null: no template.
CREATE OR REPLACE FUNCTION {{schema}}.unique_key_for_slot(p_template text, p_slot timestamp with time zone)
 RETURNS text
 LANGUAGE sql
 STABLE
 SET search_path TO {{schema}}, pg_catalog, pg_temp
AS $function$
  SELECT replace(p_template, '{{slot}}', to_char(p_slot AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))
$function$;
