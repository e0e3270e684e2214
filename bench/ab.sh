#!/usr/bin/env bash
# Alternates commands on the same data, ROUNDS times, and prints each one's median wall
# time and CPU (task-clock, user, system) from `perf stat`. The destination /dev/shm/t-ab is
# removed before every run. For A/B tests of two builds against the peers and the floor:
#   bench/ab.sh 12 "old:/tmp/ferry-old sync data-small /dev/shm/t-ab -q" \
#                  "new:.build/release/ferry sync data-small /dev/shm/t-ab -q" \
#                  "cp:cp -a data-small /dev/shm/t-ab"
# Commands run in /dev/shm/ferry-bench (bench.py makes the data there); relative paths in
# them are taken from there, so give builds as absolute paths. Needs perf.
# On the disk: AB_DEST=/tmp/t-ab bench/ab.sh ... writes there instead (/dev/shm/t-ab in the
# commands is replaced by it), and each copy is moved aside rather than removed until the
# end: ext4 here makes a file created right after many deletions cost up to 1 ms.
set -euo pipefail
rounds=$1; shift
work=$(mktemp -d)
dest=${AB_DEST:-/dev/shm/t-ab}
trash="$dest.trash"
trap 'rm -rf "$work" "$dest" "$trash"' EXIT
mkdir -p "$trash"
cd /dev/shm/ferry-bench
n=0
for _ in $(seq "$rounds"); do
  i=0
  for spec in "$@"; do
    i=$((i + 1))
    cmd=${spec#*:}
    cmd=${cmd//\/dev\/shm\/t-ab/$dest}
    if [ -z "${AB_DEST:-}" ]; then
      rm -rf "$dest"  # tmpfs: deleting costs the next run nothing, and keeping copies fills memory
    elif [ -e "$dest" ]; then
      n=$((n + 1)); mv "$dest" "$trash/$n"; sync
    fi
    start=$(date +%s%N)
    # shellcheck disable=SC2086
    perf stat -x, -e task-clock,user_time,system_time -o "$work/stat" $cmd >/dev/null
    end=$(date +%s%N)
    echo "$(( (end - start) / 1000 )) $(grep task-clock "$work/stat" | cut -d, -f1) $(grep user_time "$work/stat" | cut -d, -f1) $(grep system_time "$work/stat" | cut -d, -f1)" >> "$work/$i"
  done
done
i=0
for spec in "$@"; do
  i=$((i + 1))
  python3 - "${spec%%:*}" "$work/$i" <<'PY'
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[2])]
med = lambda k: statistics.median(r[k] for r in rows)
print("%-22s wall %.3f s (min %.3f)  cpu %.0f ms  user %.0f  sys %.0f  (n=%d)" % (
    sys.argv[1], med(0) / 1e6, min(r[0] for r in rows) / 1e6, med(1), med(2) / 1e6, med(3) / 1e6, len(rows)))
PY
done
