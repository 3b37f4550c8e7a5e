#!/usr/bin/env bash
# The zero-setup path as a user meets it, in a fresh clone of this repository:
#   zero-setup.sh [--test]     as this user, in a new directory that only it may enter (as root:
#                              one the server's "postgres" user cannot enter), with a space in
#                              the path; --test also runs `npm test` in that clone
#   zero-setup.sh --user NAME  as NAME (created if missing), in a clone in its home
# Each: npm ci; npm start in the background; the task from the printed psql line runs to CS;
# Ctrl-C (SIGINT to the process group, as a terminal sends it) stops everything, and no
# process that the start made is left.
set -euo pipefail
export NPM_CONFIG_UPDATE_NOTIFIER=false
here="$(cd "$(dirname "$0")/.." && pwd)"

try_start() {
  local clone="$1" log="$1/../start.log"
  cd "$clone"
  echo "--- zero-setup as $(id -un) in '$clone'"
  npm ci --no-audit --no-fund --loglevel=error
  set -m # a process group of its own, like a job started at a terminal
  npm start >"$log" 2>&1 &
  local pid=$!
  set +m
  # If a check below fails, the start must not outlive this script (see stop_started).
  STARTED="$pid"
  local url="" i
  for i in $(seq 1 240); do
    url="$(sed -n 's/^Connect: *psql "\(.*\)"$/\1/p' "$log")"
    [ -n "$url" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  if [ -z "$url" ]; then cat "$log"; echo "zero-setup: npm start did not come up" >&2; return 1; fi
  # The README's first task, exactly as the start printed it.
  # -q: no "INSERT 0 1" after the id. No "| head" here: under pipefail, psql writing into a
  # pipe that head already closed dies of SIGPIPE (exit 141).
  local id
  id="$(eval "$(grep -m1 '^  psql ' "$log") -qAt")"
  id="${id%%$'\n'*}"
  local state=""
  for i in $(seq 1 120); do
    state="$(psql "$url" -Atc "SELECT state_id FROM long_task.task WHERE id = $id")"
    [ "$state" = CS ] && break
    sleep 0.5
  done
  if [ "$state" != CS ]; then cat "$log"; echo "zero-setup: task $id is $state, not CS" >&2; return 1; fi
  # Every process the start made: its group, and those in other groups (the PostgreSQL
  # supervisor, the server, the reaper, the spawn helper) found by their descent from it.
  local data pids
  data="$(sed -n 's/^Data: *\(.*\) (delete it.*$/\1/p' "$log")"
  pids="$(descendants "$pid")"
  kill -INT -- "-$pid"
  local code=0
  wait "$pid" || code=$?
  STARTED=""
  # 130: npm itself got the SIGINT too, as it does at a terminal; pg-tasks exited cleanly.
  case "$code" in 0 | 130) ;; *) cat "$log"; echo "zero-setup: npm start exited with $code" >&2; return 1 ;; esac
  for i in $(seq 1 60); do
    left=""
    for p in $pids; do kill -0 "$p" 2>/dev/null && left="$left $p"; done
    [ -z "$left" ] && break
    sleep 0.5
  done
  if [ -n "$left" ]; then ps -o pid,pgid,args -p "${left# }" || true; echo "zero-setup: processes left:$left" >&2; return 1; fi
  [ ! -e "$data/postmaster.pid" ] || { echo "zero-setup: $data/postmaster.pid left behind" >&2; return 1; }
  echo "--- zero-setup ok: task $id ran to CS; $(echo $pids | wc -w) processes all ended after Ctrl-C; data in $data"
  DATA="$data"
}

# The start of a check that failed: Ctrl-C it, as a user would, then kill what is left.
STARTED=""
stop_started() {
  [ -n "$STARTED" ] || return 0
  kill -INT -- "-$STARTED" 2>/dev/null || return 0
  (sleep 10; kill -KILL -- "-$STARTED" 2>/dev/null) &
  local killer=$!
  wait "$STARTED" 2>/dev/null || true
  kill "$killer" 2>/dev/null || true
}

# The pids descending from $1, whatever process group they moved to.
descendants() {
  local all="$1" frontier="$1" next p
  while [ -n "$frontier" ]; do
    next=""
    for p in $frontier; do next="$next $(ps -o pid= --ppid "$p" | tr '\n' ' ')"; done
    frontier="$(echo $next)"
    all="$all $frontier"
  done
  echo $all
}

trap stop_started EXIT

case "${1:-}" in
  --user)
    user="$2"
    id -u "$user" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$user"
    home="$(getent passwd "$user" | cut -d: -f6)"
    clone="$home/pg-tasks-zero-setup"
    rm -rf "$clone"
    git clone -q "$here" "$clone"
    chown -R "$user:" "$clone"
    # A login shell: the user's own HOME and npm cache, nothing of root's.
    su - "$user" -c "bash '$clone/.ci/zero-setup.sh' --here"
    ;;
  --here)
    try_start "$here"
    ;;
  '' | --test)
    base="$(mktemp -d)" # mode 700: no other user may enter
    trap 'stop_started; rm -rf "$base"' EXIT
    clone="$base/pg tasks"
    git clone -q "$here" "$clone"
    try_start "$clone"
    # Data relocated out of the clone (as root, under /var/lib/pg-tasks) goes with it.
    case "$DATA" in
      "$clone"/*) ;;
      *)
        rm -rf "$DATA"
        # Relocated: nothing of it is left in the clone, not even an empty .pg-tasks.
        if [ -e "$clone/.pg-tasks" ]; then ls -la "$clone/.pg-tasks"; echo "zero-setup: $clone/.pg-tasks left behind, the data being in $DATA" >&2; exit 1; fi
        ;;
    esac
    if [ "${1:-}" = --test ]; then
      echo "--- npm test in '$clone' (embedded PostgreSQL)"
      cd "$clone" && env -u DATABASE_URL npm test
    fi
    ;;
  *)
    echo "zero-setup.sh: unknown argument $1" >&2
    exit 2
    ;;
esac
