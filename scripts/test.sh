#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine (as root), starts the Docker
# engine, builds the sandbox image, and runs the whole suite. CI (.ci/run) calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  need=""
  for pkg in bubblewrap python3-numpy python3-pandas python3-sklearn chromium docker.io debootstrap iproute2; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need="$need $pkg"
  done
  if [ -n "$need" ]; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $need
  fi
fi

# torch first and pinned: an unpinned torch may pull a multi-GB CUDA build
python3 -m pip install -q "torch==2.13.0"
python3 -m pip install -q -e ".[engine,hf,jax,dev,ray,humaneval]" "jax[cpu]"

if [ -f scripts/ci_docker.sh ]; then
  bash scripts/ci_docker.sh
  export MTPB_REQUIRE_DOCKER=1
fi

python3 -m pytest -q "$@"
