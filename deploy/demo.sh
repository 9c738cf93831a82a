#!/usr/bin/env bash
# The kill -9 demo on docker compose: start everything, enqueue simulated jobs, kill -9 the
# controller mid-run, let compose restart it, and show that every job ends exactly once.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-1000}
docker compose up -d --build --scale worker=3
fleet() { docker compose run --rm -T controller "$@"; }
python3 - "$JOBS" > /tmp/fleet-demo-jobs.json <<'PY'
import json, sys
print(json.dumps([{"id": f"task-{i:04d}", "payload": {"value": i}}
                  for i in range(1, int(sys.argv[1]) + 1)]))
PY
fleet enqueue --file - --quiet < /tmp/fleet-demo-jobs.json
sleep 8
echo "*** kill -9 the controller ***"
docker compose kill -s SIGKILL controller
docker compose up -d controller
until fleet status --json > /tmp/fleet-status.json 2>/dev/null; do sleep 1; done
docker compose logs controller | grep "recovered in" | tail -1
while :; do
  fleet status --json > /tmp/fleet-status.json
  python3 - "$JOBS" /tmp/fleet-status.json <<'PY' && break
import json, sys
s = json.load(open(sys.argv[2]))["states"]
done = s["completed"] + s["dead"]
print(f"completed {s['completed']} dead {s['dead']} in flight {s['in_flight']} pending {s['pending']}")
sys.exit(0 if done >= int(sys.argv[1]) else 1)
PY
  sleep 2
done
fleet status
