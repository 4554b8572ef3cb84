#!/usr/bin/env bash
# Builds the two service images from the monorepo and prints their sizes.
#   scripts/docker-build.sh                    -> nostream-ilp:latest, dassie-node:latest
#   REGISTRY=registry.example/me scripts/docker-build.sh  also tags <REGISTRY>/<image>:<TAG>
#   TAG=1.2.3 scripts/docker-build.sh            (default TAG=latest)
set -euo pipefail
cd "$(dirname "$0")/.."
TAG=${TAG:-latest}

build() {
  local image=$1 dockerfile=$2
  echo "==> building $image:$TAG from $dockerfile"
  docker build -f "$dockerfile" -t "$image:$TAG" .
  if [ "$TAG" != latest ]; then docker tag "$image:$TAG" "$image:latest"; fi
  if [ -n "${REGISTRY:-}" ]; then
    docker tag "$image:$TAG" "${REGISTRY%/}/$image:$TAG"
    echo "    tagged ${REGISTRY%/}/$image:$TAG"
  fi
}

build nostream-ilp docker/Dockerfile.nostream
build dassie-node docker/Dockerfile.dassie

echo
echo "Images:"
for image in nostream-ilp dassie-node; do
  bytes=$(docker image inspect --format '{{.Size}}' "$image:$TAG")
  printf '  %-22s %6d MB\n' "$image:$TAG" $((bytes / 1000000))
done
