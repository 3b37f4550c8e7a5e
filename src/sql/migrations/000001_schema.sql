-- pg-tasks schema, version 1: the seed's tables, codes and rules, plus the columns a node
-- needs to report what it ran. {{schema}} is the quoted schema identifier (long_task by
-- default); it is the only text ever substituted into our SQL.

CREATE TABLE {{schema}}.task_state (
  id   char(2) PRIMARY KEY,
  name text    NOT NULL
);
INSERT INTO {{schema}}.task_state (id, name) VALUES
  ('DR', 'Draft'),
  ('AW', 'Waiting'),
  ('AE', 'Executing'),
  ('AC', 'Cancelling'),
  ('CS', 'Completed'),
  ('CF', 'Failed'),
  ('CC', 'Cancelled');

CREATE TABLE {{schema}}.period (
  id   char(3) PRIMARY KEY,
  name text    NOT NULL
);
INSERT INTO {{schema}}.period (id, name) VALUES
  ('SEC', 'Second'),
  ('MIN', 'Minute'),
  ('HOU', 'Hour'),
  ('DAY', 'Day'),
  ('WEE', 'Week'),
  ('MON', 'Month');

CREATE TABLE {{schema}}.worker (
  id             int         PRIMARY KEY,
  group_id       int         NOT NULL DEFAULT 0,
  -- end of the current lease, in database time
  locked_until   timestamptz,
  -- true while a node holds the lease; true with a lapsed lease = a failed worker
  active         boolean     NOT NULL DEFAULT false,
  task_count     int         NOT NULL DEFAULT 0,
  node_name      text,
  -- written by users: 0 run; 1 start no new tasks; 2 no new tasks, exit when idle;
  -- 3 cancel the running tasks, then exit
  stop           smallint    NOT NULL DEFAULT 0
                             CONSTRAINT worker_stop_code CHECK (stop BETWEEN 0 AND 3),
  -- added by pg-tasks
  max_task_count int,
  host           text,
  pid            int,
  -- ownership token: incremented by every take-over of the lease and stamped on the tasks
  -- the holder claims, so a node that lost its lease can no longer write about them
  lease_epoch    bigint      NOT NULL DEFAULT 0,
  lease_taken    timestamptz
);

CREATE TABLE {{schema}}.task (
  id                bigserial   PRIMARY KEY,
  params            jsonb,
  state_id          char(2)     NOT NULL DEFAULT 'DR' REFERENCES {{schema}}.task_state (id),
  -- smaller runs first; FIFO by last_state_change within one priority
  priority          int         NOT NULL DEFAULT 0,
  group_id          int         NOT NULL DEFAULT 0,
  -- null = any worker of the group; set = only that worker (and set by the node that runs it)
  worker_id         int,
  error             text,
  command           varchar[]   NOT NULL
                    CONSTRAINT task_command_not_empty
                    CHECK (cardinality(command) >= 1 AND command[1] <> '' AND array_position(command, NULL) IS NULL),
  cwd               varchar,
  started           timestamptz,
  created           timestamptz NOT NULL DEFAULT now(),
  last_state_change timestamptz NOT NULL DEFAULT now(),
  next_start        timestamptz,
  shed_period_id    char(3)     REFERENCES {{schema}}.period (id),
  shed_period_count int         CONSTRAINT task_shed_period_count_positive CHECK (shed_period_count > 0),
  shed_clone        boolean     NOT NULL DEFAULT false,
  shed_parent_id    bigint      REFERENCES {{schema}}.task (id) ON DELETE SET NULL,
  -- added by pg-tasks: what the node saw when it ran the process
  finished          timestamptz,
  exit_code         int,
  exit_signal       text,
  pid               int,
  node_name         text,
  output            text,
  lease_epoch       bigint
);

-- The claim reads waiting tasks of one group in priority order; the partial index keeps
-- that read proportional to the tasks it returns, not to the size of the table.
CREATE INDEX task_waiting_idx ON {{schema}}.task (group_id, priority, last_state_change, id)
  WHERE state_id = 'AW';
-- A node looks up the tasks it owns (cancellations, recovery).
CREATE INDEX task_active_worker_idx ON {{schema}}.task (worker_id)
  WHERE state_id IN ('AE', 'AC');

-- Rules of the lifecycle (docs/lifecycle.md), enforced for every writer.
CREATE FUNCTION {{schema}}.task_before_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.state_id NOT IN ('DR', 'AW') THEN
    RAISE EXCEPTION 'a task can only be inserted in state DR or AW, not %', NEW.state_id
      USING ERRCODE = 'check_violation';
  END IF;
  NEW.created := now();
  NEW.last_state_change := now();
  RETURN NEW;
END;
$$;

CREATE FUNCTION {{schema}}.task_before_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.state_id IN ('AE', 'AC') AND NEW.worker_id IS DISTINCT FROM OLD.worker_id THEN
    RAISE EXCEPTION 'can''t change the worker_id of task % while it is % (cancel it first)',
      OLD.id, OLD.state_id USING ERRCODE = 'check_violation';
  END IF;

  IF NEW.state_id IS DISTINCT FROM OLD.state_id THEN
    -- An AW task has no process: cancelling it ends it at once.
    IF NEW.state_id = 'AC' AND OLD.state_id = 'AW' THEN
      NEW.state_id := 'CC';
      NEW.finished := now();
    END IF;

    IF NEW.state_id = 'AC' AND OLD.state_id NOT IN ('AW', 'AE') THEN
      RAISE EXCEPTION 'can''t cancel an inactive task (task % is %)', OLD.id, OLD.state_id
        USING ERRCODE = 'check_violation';
    ELSIF NEW.state_id IN ('DR', 'AW') AND OLD.state_id IN ('AE', 'AC') THEN
      -- A running process answers for the task; queuing it again would run it twice.
      RAISE EXCEPTION 'can''t set task % to % while it is % (cancel it first)',
        OLD.id, NEW.state_id, OLD.state_id USING ERRCODE = 'check_violation';
    ELSIF NEW.state_id = 'AE' AND OLD.state_id <> 'AW' THEN
      RAISE EXCEPTION 'task % can only start executing from AW, not %', OLD.id, OLD.state_id
        USING ERRCODE = 'check_violation';
    ELSIF NEW.state_id IN ('CS', 'CF') AND OLD.state_id NOT IN ('AE', 'AC') THEN
      RAISE EXCEPTION 'task % can only complete or fail from AE or AC, not %', OLD.id, OLD.state_id
        USING ERRCODE = 'check_violation';
    ELSIF NEW.state_id = 'CC' AND OLD.state_id NOT IN ('AW', 'AE', 'AC') THEN
      -- From AE too: a node that ends its own tasks (shutdown in cancel mode, stop code 3)
      -- writes CC for tasks nobody asked to cancel.
      RAISE EXCEPTION 'task % can only become cancelled while it is active (AW, AE or AC), not %',
        OLD.id, OLD.state_id USING ERRCODE = 'check_violation';
    END IF;

    IF NEW.state_id = 'AW' THEN
      -- A fresh run: forget what the last one reported.
      NEW.error := NULL;
      NEW.exit_code := NULL;
      NEW.exit_signal := NULL;
      NEW.finished := NULL;
      NEW.pid := NULL;
      NEW.output := NULL;
      NEW.lease_epoch := NULL;
    END IF;
    NEW.last_state_change := now();
  END IF;
  RETURN NEW;
END;
$$;

CREATE TRIGGER task_before_insert BEFORE INSERT ON {{schema}}.task
  FOR EACH ROW EXECUTE FUNCTION {{schema}}.task_before_insert();
CREATE TRIGGER task_before_update BEFORE UPDATE ON {{schema}}.task
  FOR EACH ROW EXECUTE FUNCTION {{schema}}.task_before_update();

-- Notifications are statement-level: one INSERT or UPDATE of 100 000 rows sends one
-- notification per group with waiting work and one per worker with cancellations, not one
-- per row. They are hints; nodes read the table to learn what actually changed.
-- The channel is the schema name, so several schemas in one database don't wake each other.
CREATE FUNCTION {{schema}}.task_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  r record;
BEGIN
  FOR r IN SELECT DISTINCT group_id FROM new_rows WHERE state_id = 'AW' LOOP
    PERFORM pg_notify(TG_TABLE_SCHEMA, json_build_object('e', 'queued', 'g', r.group_id)::text);
  END LOOP;
  FOR r IN SELECT DISTINCT worker_id FROM new_rows WHERE state_id = 'AC' LOOP
    PERFORM pg_notify(TG_TABLE_SCHEMA, json_build_object('e', 'cancel', 'w', r.worker_id)::text);
  END LOOP;
  RETURN NULL;
END;
$$;

CREATE TRIGGER task_notify_insert AFTER INSERT ON {{schema}}.task
  REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION {{schema}}.task_notify();
CREATE TRIGGER task_notify_update AFTER UPDATE ON {{schema}}.task
  REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION {{schema}}.task_notify();

-- Only user-visible changes notify: a lease renewal changes locked_until every few seconds
-- and must not wake every node of the cluster.
CREATE FUNCTION {{schema}}.worker_notify_row() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' OR NEW.stop IS DISTINCT FROM OLD.stop OR NEW.active IS DISTINCT FROM OLD.active THEN
    PERFORM pg_notify(TG_TABLE_SCHEMA, json_build_object('e', 'worker', 'w', NEW.id)::text);
  END IF;
  RETURN NULL;
END;
$$;

CREATE TRIGGER worker_notify AFTER INSERT OR UPDATE ON {{schema}}.worker
  FOR EACH ROW EXECUTE FUNCTION {{schema}}.worker_notify_row();

-- Recovery policy for a failed worker: called once, by the node that takes over a worker
-- whose lease lapsed while it was active. Replace it with your own policy if you like;
-- migrations never overwrite it once it exists.
-- The body names no schema (search_path does), so no schema name can end its $$ quoting.
CREATE FUNCTION {{schema}}.recover_worker_tasks(p_worker_id int) RETURNS void
LANGUAGE sql
SET search_path = {{schema}}, pg_catalog
AS $$
  UPDATE task
     SET state_id = 'CF', error = 'Worker failed', finished = now()
   WHERE worker_id = p_worker_id AND state_id IN ('AE', 'AC');
$$;
