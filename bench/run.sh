#!/usr/bin/env bash
# Benchmarks Ferry against rsync and cp on the same data in the same run.
#   bench/run.sh [--quick] [bench.py options: --runs N --cases small,large --fs disk,tmpfs]
# Builds Ferry in release mode first; do not run it while another build runs.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v rsync >/dev/null || { echo "bench needs rsync: apt-get install -y rsync" >&2; exit 1; }
swift build -c release --product ferry >/dev/null
args=("$@")
if [ "${1:-}" = "--quick" ]; then args=(--runs 1 "${@:2}"); fi
exec python3 bench/bench.py "${args[@]}"
