-- Rules of the lifecycle (docs/lifecycle.md), enforced for every writer; the live run is read
-- from the row itself (live_worker_id, live_epoch).
CREATE OR REPLACE FUNCTION {{schema}}.task_before_update()
 RETURNS trigger
 LANGUAGE plpgsql
 SET search_path TO {{schema}}, pg_catalog, pg_temp
AS $function$
DECLARE
  live boolean := OLD.live_worker_id IS NOT NULL;
  claim boolean := NEW.attempt = OLD.attempt + 1 AND OLD.state_id = 'AW' AND NEW.state_id = 'AE';
  -- The end of a lost claim (its reply never reached the node, no process started): the run's
  -- live mark cleared with lost_claims counting it. Not an attempt: the task is queued again.
  lost boolean := live AND NEW.live_worker_id IS NULL AND NEW.lost_claims = OLD.lost_claims + 1;
BEGIN
  -- (A retry, AE to AW with a run_after, may go to any worker of the group.)
  -- (So may a lost claim's re-queue, AE to AW, when the claim was not pinned.)
  IF OLD.state_id IN ('AE', 'AC') AND NEW.worker_id IS DISTINCT FROM OLD.worker_id
     AND NOT (NEW.state_id = 'AW' AND NEW.run_after IS NOT NULL)
     AND NOT (lost AND OLD.state_id = 'AE' AND NEW.state_id = 'AW') THEN
    RAISE EXCEPTION 'can''t change the worker_id of task % while it is % (cancel it first)',
      OLD.id, OLD.state_id USING ERRCODE = 'check_violation';
  END IF;

  -- attempt counts the runs: only a claim moves it, by one, as it starts the next run. The
  -- node's writes about a run are matched on it.
  IF NEW.attempt IS DISTINCT FROM OLD.attempt AND NOT claim THEN
    RAISE EXCEPTION 'the attempt of task % is kept by pg-tasks: it counts the runs (see task_run)', OLD.id
      USING ERRCODE = 'check_violation';
  END IF;
  -- lost_claims counts the lost claims (retry_delay subtracts them from attempt): only the
  -- end of one moves it, by one.
  IF NEW.lost_claims IS DISTINCT FROM OLD.lost_claims AND NOT lost THEN
    RAISE EXCEPTION 'the lost_claims of task % is kept by pg-tasks: it counts the claims whose reply was lost', OLD.id
      USING ERRCODE = 'check_violation';
  END IF;
  -- The live-run mark is set by a claim (of a task with none) and cleared when the run ends.
  IF NEW.live_worker_id IS NOT NULL
     AND (NEW.live_worker_id IS DISTINCT FROM OLD.live_worker_id OR NEW.live_epoch IS DISTINCT FROM OLD.live_epoch)
     AND NOT (claim AND NOT live) THEN
    RAISE EXCEPTION 'the live run of task % is kept by pg-tasks: a claim marks it, its end clears it', OLD.id
      USING ERRCODE = 'check_violation';
  END IF;

  IF NEW.state_id IS DISTINCT FROM OLD.state_id THEN
    -- A user who ends an executing task as cancelled asks for a cancel: the row may not end
    -- while its process lives. It becomes AC; the node kills the process and writes CC. The
    -- node's own CC (shutdown in cancel mode, stop code 3) clears the live mark with it.
    IF NEW.state_id = 'CC' AND OLD.state_id = 'AE' AND live
       AND NEW.live_worker_id IS NOT DISTINCT FROM OLD.live_worker_id THEN
      NEW.state_id := 'AC';
      NEW.finished := OLD.finished;
      NEW.end_reason := OLD.end_reason;
      NEW.error := OLD.error;
    END IF;
    -- A waiting task with no process: cancelling it ends it at once.
    IF NEW.state_id = 'AC' AND OLD.state_id = 'AW' AND NOT live THEN
      NEW.state_id := 'CC';
      NEW.end_reason := 'cancelled';
      NEW.finished := now();
    END IF;

    IF NEW.state_id = 'AC' AND OLD.state_id NOT IN ('AW', 'AE') AND NOT live THEN
      RAISE EXCEPTION 'can''t cancel an inactive task (task % is %)', OLD.id, OLD.state_id
        USING ERRCODE = 'check_violation';
    ELSIF NEW.state_id IN ('DR', 'AW') AND OLD.state_id IN ('AE', 'AC')
          AND NOT (NEW.state_id = 'AW' AND NEW.run_after IS NOT NULL)
          AND NOT (NEW.state_id = 'AW' AND OLD.state_id = 'AE' AND lost) THEN
      -- A running process answers for the task; queue it again once it has ended (or cancel
      -- it first). A node's retry, written with the run's end, goes straight to AW with a
      -- run_after; a lost claim's end (no process ever started) goes to AW at once.
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
      -- A fresh run: forget what the last one reported (task_run keeps it).
      NEW.error := NULL;
      NEW.exit_code := NULL;
      NEW.exit_signal := NULL;
      NEW.finished := NULL;
      NEW.pid := NULL;
      NEW.output := NULL;
      NEW.lease_epoch := NULL;
      NEW.end_reason := NULL;
      -- What the last run said on fd 3 (version 28): task_run keeps it.
      NEW.progress := NULL;
      NEW.progress_message := NULL;
      NEW.result := NULL;
    END IF;
    IF NEW.state_id <> 'AW' THEN
      NEW.run_after := NULL;
    END IF;
    NEW.last_state_change := now();
  END IF;
  RETURN NEW;
END;
$function$;

DROP TRIGGER IF EXISTS task_before_update ON {{schema}}.task;
CREATE TRIGGER task_before_update BEFORE UPDATE ON {{schema}}.task FOR EACH ROW WHEN (((old.state_id IS DISTINCT FROM new.state_id) OR (old.worker_id IS DISTINCT FROM new.worker_id) OR (old.attempt IS DISTINCT FROM new.attempt) OR (old.live_worker_id IS DISTINCT FROM new.live_worker_id) OR (old.live_epoch IS DISTINCT FROM new.live_epoch) OR (old.lost_claims IS DISTINCT FROM new.lost_claims))) EXECUTE FUNCTION {{schema}}.task_before_update();
