#!/usr/bin/env bash
# Stops and removes the stack's containers; the volumes (the relay's events in
# postgres-data, the node's ledger in dassie-data) stay for the next start.
#   scripts/docker-stop.sh
#   scripts/docker-stop.sh --volumes --yes   also deletes the volumes: every stored
#                                            event and the ledger of what was paid
# ENV_FILE names another env file than .env.
set -euo pipefail
cd "$(dirname "$0")/.."
ENV_FILE=${ENV_FILE:-.env}
volumes=() confirmed=no
for arg in "$@"; do
  case $arg in
    --volumes) volumes=(--volumes) ;;
    --yes) confirmed=yes ;;
    -h | --help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "docker-stop: unknown option $arg (try --help)" >&2; exit 2 ;;
  esac
done
if [ ${#volumes[@]} -gt 0 ] && [ "$confirmed" != yes ]; then
  echo "docker-stop: --volumes deletes the ledger and every event; add --yes to do it" >&2
  exit 2
fi
env_args=()
if [ -f "$ENV_FILE" ]; then env_args=(--env-file "$ENV_FILE"); fi
# `down` needs no secrets: placeholders keep compose's required-variable checks quiet.
SECRET=${SECRET:-unused} DASSIE_RPC_TOKEN=${DASSIE_RPC_TOKEN:-unused} \
  DB_PASSWORD=${DB_PASSWORD:-unused} REDIS_PASSWORD=${REDIS_PASSWORD:-unused} \
  docker compose "${env_args[@]}" --profile dev down --remove-orphans "${volumes[@]}"
