#!/usr/bin/env bash
# The kill -9 demo on docker compose, against a stack that is up (`docker compose up -d`):
# enqueue JOBS simulated jobs (0-500 ms of work, 10% failures) in the original plan's job
# file format, SIGKILL the controller's process mid-run (a crash, not `docker stop`: the
# restart policy brings it back, its log and snapshots on the fleet-data volume), and show
# that every job ends exactly once in the record. Exits non-zero if any job was lost or
# completed twice. Honours COMPOSE_PROJECT_NAME and the other docker compose variables.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-1000}
KILL_AT=${KILL_AT:-$((JOBS * 3 / 10))}   # jobs ended before the kill
TIMEOUT_S=${TIMEOUT_S:-300}

probe() { docker compose exec -T controller python - "$@" < deploy/probe.py; }

# polls `probe ended` until at least $1 jobs ended; the controller may be restarting
wait_ended() {
  local deadline=$((SECONDS + TIMEOUT_S)) count
  while ((SECONDS < deadline)); do
    if count=$(probe ended 2> >(sed "s/^/[${SECONDS}s] /" >&2)) && ((count >= $1)); then
      return 0
    fi
    sleep 1
  done
  echo "demo: jobs did not reach $1 ended within ${TIMEOUT_S} s" >&2
  return 1
}

python3 -c 'import json, sys; print(json.dumps([{"id": f"task-{i:04d}", "payload": {"value": i}}
             for i in range(1, int(sys.argv[1]) + 1)]))' "$JOBS" \
  | docker compose exec -T controller fleet enqueue --file - --quiet
wait_ended "$KILL_AT"

container=$(docker compose ps -q controller)
restarts=$(docker inspect -f '{{.RestartCount}}' "$container")
pid=$(docker inspect -f '{{.State.Pid}}' "$container")
recoveries() { docker compose logs --no-log-prefix controller | grep -o 'recovered in .*'; }
before=$(recoveries | wc -l)
echo "*** kill -9 the controller (host pid $pid) ***"
kill -KILL "$pid"
until [[ $(docker inspect -f '{{.RestartCount}} {{.State.Running}}' "$container") == \
         "$((restarts + 1)) true" ]]; do
  sleep 0.2
done
until (($(recoveries | wc -l) > before)); do sleep 0.2; done
echo "*** restarted by its restart policy; $(recoveries | tail -1) ***"
wait_ended "$JOBS"
docker compose exec -T controller fleet status
probe verdict "$JOBS"
