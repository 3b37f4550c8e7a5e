-- Version 2: scheduling. The seed's next_start + shed_period_* + shed_clone, plus a cron
-- expression and a time zone. See docs/scheduling.md.

ALTER TABLE {{schema}}.task
  -- A cron expression (5 fields, or 6 with seconds first): an alternative to the period.
  ADD COLUMN shed_cron       text,
  -- The zone in which DAY/WEE/MON periods keep their wall-clock time and cron reads its fields.
  ADD COLUMN shed_tz         text NOT NULL DEFAULT 'UTC',
  -- The first slot of a period schedule, as the user set it: later slots are counted from it,
  -- so a month after Jan 31 is Feb 28 and the one after that Mar 31, not Mar 28.
  ADD COLUMN shed_anchor     timestamptz,
  -- Slots that came while the task was still waiting or running (not cloned, not re-queued).
  ADD COLUMN shed_skip_count int NOT NULL DEFAULT 0,
  ADD CONSTRAINT task_shed_period_or_cron CHECK (shed_cron IS NULL OR shed_period_id IS NULL);

-- The scheduler of each group looks for its earliest due schedule, and for cron schedules
-- whose first slot is still to be computed.
CREATE INDEX task_schedule_idx ON {{schema}}.task (group_id, next_start)
  WHERE next_start IS NOT NULL OR shed_cron IS NOT NULL;

-- A structural check of a cron expression: 5 or 6 fields, each a list of *, numbers, ranges,
-- steps or names within the field's range (L, # and ? where the node's cron library allows
-- them; it has no W and no L-n). The node computes the slots with that library; this refuses
-- at write time what it would refuse.
CREATE FUNCTION {{schema}}.cron_field_valid(field text, lo int, hi int, names text[], extra text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE AS $$
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
$$;

CREATE FUNCTION {{schema}}.cron_valid(expr text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE
SET search_path = {{schema}}, pg_catalog
AS $$
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
$$;

-- IANA zone names only: PostgreSQL also accepts abbreviations (PST) and POSIX offsets (+3),
-- which the node's zone database (ICU, through luxon) does not. A name with a slash is a zone
-- name to PostgreSQL, and AT TIME ZONE checks it in microseconds; the rare names without one
-- (UTC, EST5EDT, Japan) are looked up in pg_timezone_names, which takes ~80 ms. A server
-- built with the system's zone files also knows posix/..., right/..., localtime and
-- posixrules, and every server knows Factory: none of them is an IANA zone to ICU.
CREATE FUNCTION {{schema}}.time_zone_valid(tz text) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
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
$$;

CREATE FUNCTION {{schema}}.task_schedule_rules() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  valid boolean;
BEGIN
  IF NEW.shed_period_id IS NOT NULL AND NEW.shed_period_count IS NULL THEN
    NEW.shed_period_count := 1;
  END IF;
  IF NEW.shed_cron IS NOT NULL AND (TG_OP = 'INSERT' OR NEW.shed_cron IS DISTINCT FROM OLD.shed_cron) THEN
    -- The validators are looked up in the trigger's own schema at run time, so that no schema
    -- name is spelled inside this dollar-quoted body. Only a changed cron or zone pays for it.
    EXECUTE format('SELECT %I.cron_valid($1)', TG_TABLE_SCHEMA) INTO valid USING NEW.shed_cron;
    IF NOT valid THEN
      RAISE EXCEPTION 'invalid cron expression "%": expected 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first, each within its range', NEW.shed_cron
        USING ERRCODE = 'check_violation';
    END IF;
  END IF;
  IF NEW.shed_tz <> 'UTC' AND (TG_OP = 'INSERT' OR NEW.shed_tz IS DISTINCT FROM OLD.shed_tz) THEN
    EXECUTE format('SELECT %I.time_zone_valid($1)', TG_TABLE_SCHEMA) INTO valid USING NEW.shed_tz;
    IF NOT valid THEN
      RAISE EXCEPTION 'unknown time zone "%": use an IANA name such as UTC or Europe/Berlin', NEW.shed_tz
        USING ERRCODE = 'check_violation';
    END IF;
  END IF;
  -- A cron schedule whose expression or zone changed needs its next slot computed again (by a
  -- node, which does so for a cron schedule without next_start), unless the same statement
  -- sets next_start itself.
  IF TG_OP = 'UPDATE' AND NEW.shed_cron IS NOT NULL
     AND (NEW.shed_cron IS DISTINCT FROM OLD.shed_cron OR NEW.shed_tz IS DISTINCT FROM OLD.shed_tz)
     AND NEW.next_start IS NOT DISTINCT FROM OLD.next_start THEN
    NEW.next_start := NULL;
  END IF;
  -- A schedule the user sets or changes starts a new anchor. The scheduler's own advances run
  -- with pg_tasks.advancing set for their transaction and keep it.
  IF coalesce(current_setting('pg_tasks.advancing', true), '') <> 'on' THEN
    IF TG_OP = 'INSERT'
       OR NEW.next_start IS DISTINCT FROM OLD.next_start
       OR NEW.shed_period_id IS DISTINCT FROM OLD.shed_period_id
       OR NEW.shed_period_count IS DISTINCT FROM OLD.shed_period_count
       OR NEW.shed_tz IS DISTINCT FROM OLD.shed_tz THEN
      NEW.shed_anchor := CASE WHEN NEW.shed_period_id IS NULL THEN NULL ELSE NEW.next_start END;
    END IF;
  END IF;
  RETURN NEW;
END;
$$;

CREATE TRIGGER task_schedule_rules BEFORE INSERT OR UPDATE ON {{schema}}.task
  FOR EACH ROW EXECUTE FUNCTION {{schema}}.task_schedule_rules();

-- Schedules may have changed: the nodes of those groups re-arm their one timer (one read).
-- One notification per group per statement, like the others. An update notifies for the
-- scheduled rows it touched, changed or not: comparing with the old rows would need a join
-- of two transition tables, which have no statistics, and a nested loop over 100 000 rows.
-- A schedule switched off (next_start set to null) sends nothing; the node's timer then
-- finds nothing due and re-arms.
CREATE FUNCTION {{schema}}.task_schedule_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  r record;
BEGIN
  FOR r IN SELECT DISTINCT group_id FROM new_rows WHERE next_start IS NOT NULL OR shed_cron IS NOT NULL LOOP
    PERFORM pg_notify(TG_TABLE_SCHEMA, json_build_object('e', 'schedule', 'g', r.group_id)::text);
  END LOOP;
  RETURN NULL;
END;
$$;

CREATE TRIGGER task_schedule_notify_insert AFTER INSERT ON {{schema}}.task
  REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION {{schema}}.task_schedule_notify();
CREATE TRIGGER task_schedule_notify_update AFTER UPDATE ON {{schema}}.task
  REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION {{schema}}.task_schedule_notify();
