#!/usr/bin/env bash
# The main job: set up, then bring up a 3-node lab with the demo workload
# (two namespaces, pods, a Service, a NetworkPolicy) and show probes that are
# allowed and blocked. Safe to run twice (an existing lab is reused).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/contivctl lab up --demo "$@"
