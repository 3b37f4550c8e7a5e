-- Every notification pg-tasks sends, built here: a JSON object whose "e" names the event and
-- whose other keys are those given (nulls left out). Its kinds and keys are the union in
-- src/db/notifications.ts, the one place that reads them. pg_notify sends a payload once per
-- transaction however often it is called with it, so triggers that wake the same group
-- (the same arguments, the same text) send one notification.
CREATE OR REPLACE FUNCTION {{schema}}.notify_event(p_channel text, p_event text, p_group integer DEFAULT NULL::integer, p_worker integer DEFAULT NULL::integer, p_ids bigint[] DEFAULT NULL::bigint[], p_epoch bigint DEFAULT NULL::bigint, p_seq integer DEFAULT NULL::integer, p_lease double precision DEFAULT NULL::double precision)
 RETURNS void
 LANGUAGE sql
AS $function$
  SELECT pg_notify(p_channel, json_strip_nulls(json_build_object(
    'e', p_event, 'g', p_group, 'w', p_worker, 'ids', p_ids, 'k', p_epoch, 'n', p_seq, 'l', p_lease))::text)
$function$;
