#!/usr/bin/env bash
# Starts the stack in the background and waits until every container is healthy.
#   scripts/docker-start.sh          nostream, dassie, nostream-db, nostream-cache
#   scripts/docker-start.sh --dev    and devchain, the local chain (compose profile dev)
# Reads .env (cp .env.example .env, then set SECRET, DASSIE_RPC_TOKEN, DB_PASSWORD
# and REDIS_PASSWORD, each from `openssl rand -hex 32`); ENV_FILE names another.
# Builds the images first if they are missing (scripts/docker-build.sh builds them).
# WAIT_SECONDS (default 180) bounds the wait; a container that exits or turns
# unhealthy ends it at once, with its last log lines.
set -euo pipefail
cd "$(dirname "$0")/.."
ENV_FILE=${ENV_FILE:-.env}
profile=()
for arg in "$@"; do
  case $arg in
    --dev) profile=(--profile dev) ;;
    -h | --help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "docker-start: unknown option $arg (try --help)" >&2; exit 2 ;;
  esac
done
if [ ! -f "$ENV_FILE" ]; then
  echo "docker-start: no $ENV_FILE: cp .env.example .env, then set SECRET, DASSIE_RPC_TOKEN," \
    "DB_PASSWORD and REDIS_PASSWORD (openssl rand -hex 32)" >&2
  exit 2
fi
compose() { docker compose --env-file "$ENV_FILE" "${profile[@]}" "$@"; }

compose up -d
deadline=$((SECONDS + ${WAIT_SECONDS:-180}))
while :; do
  # One line per container: "<name> <health, or state when it has no health check>".
  report=$(compose ps -a -q | xargs docker inspect --format \
    '{{.Name}} {{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' \
    | sed 's#^/##')
  if grep -Eq ' (unhealthy|exited|dead)$' <<<"$report"; then
    echo "$report" >&2
    compose logs --no-color --tail 40 >&2
    echo "docker-start: a container failed (above)" >&2
    exit 1
  fi
  if ! grep -vq ' healthy$' <<<"$report"; then
    break
  fi
  if ((SECONDS >= deadline)); then
    echo "$report" >&2
    echo "docker-start: not healthy after ${WAIT_SECONDS:-180} s" >&2
    exit 1
  fi
  sleep 1
done
echo "$report"
port=$(compose port nostream 8008 | sed 's/.*://')
echo "docker-start: all healthy; the relay is ws://localhost:$port (NIP-11 and /health on http)"
