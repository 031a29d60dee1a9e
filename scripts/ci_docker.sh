#!/usr/bin/env bash
# CI for the docker sandbox: install the engine, start it when none answers, build the sandbox image.
# scripts/test.sh runs this before pytest and then sets MTPB_REQUIRE_DOCKER=1, so the docker tests
# fail instead of skipping if anything here did not work.
#
#   MTPB_DOCKERD_LOG        where dockerd logs (default /tmp/dockerd.log)
#   MTPB_DOCKER_DATA_ROOT   dockerd --data-root, e.g. a folder the CI caches between runs
#   MTPB_IMAGE_CACHE        folder for a saved copy of the base image (default ~/.cache/mtpb), so a
#                           machine whose engine starts empty loads it instead of running debootstrap
set -euo pipefail
cd "$(dirname "$0")/.."

log=${MTPB_DOCKERD_LOG:-/tmp/dockerd.log}
cache=${MTPB_IMAGE_CACHE:-$HOME/.cache/mtpb}

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  need=""
  for pkg in docker.io debootstrap bubblewrap; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need="$need $pkg"
  done
  if [ -n "$need" ]; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $need
  fi
fi

if ! timeout 10 docker info >/dev/null 2>&1; then
  echo "ci_docker: starting dockerd (log: $log)"
  args=(--bridge=none --iptables=false)
  [ -n "${MTPB_DOCKER_DATA_ROOT:-}" ] && args+=(--data-root "$MTPB_DOCKER_DATA_ROOT")
  # its own session, so the engine outlives this script and serves the test run after it
  setsid dockerd "${args[@]}" >>"$log" 2>&1 </dev/null &
  for _ in $(seq 1 60); do
    timeout 10 docker info >/dev/null 2>&1 && break
    sleep 1
  done
  if ! timeout 10 docker info >/dev/null 2>&1; then
    echo "ci_docker: dockerd did not answer within a minute; the end of its log:" >&2
    tail -n 30 "$log" >&2
    exit 1
  fi
fi

base=$(python3 -c "from mtpb.sandboxes.docker_image import base_tag; print(base_tag())")
saved="$cache/$(echo "$base" | tr ':/' '__').tar"
if ! docker image inspect "$base" >/dev/null 2>&1 && [ -f "$saved" ]; then
  echo "ci_docker: loading $base from $saved"
  docker load -i "$saved" || rm -f "$saved"
fi

# Reuses the image when one for the current sandbox/ exists (tagged by content hash).
python3 -m mtpb sandbox build

if [ ! -f "$saved" ] && mkdir -p "$cache" 2>/dev/null; then
  docker save -o "$saved.part" "$base" && mv "$saved.part" "$saved" || rm -f "$saved.part"
fi
docker info --format 'ci_docker: engine {{.ServerVersion}}, storage {{.Driver}}'
