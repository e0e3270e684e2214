#!/usr/bin/env python3
"""Block-level sync: `ferry block sync` vs `rsync --inplace --no-whole-file` and
`dd conv=sparse`, on the same image in the same run (issue #6). rsync also gets -t: without
it the copy gets the time of the copy, and a change made in the same second is skipped.

The image: 4 GiB, 10 % allocated as 1,640 random extents of 256 KiB (4 KiB aligned).
For each round, each tool (order rotated) makes a first copy into a fresh destination,
then 1 % of the 1 MiB blocks (41, one 4 KiB write each) change in the source and each
tool runs again into its own copy (the change is undone afterwards, so every round sees
the same data). Measured per run: wall time, peak RSS (wait4), bytes read and written
through syscalls (rchar/wchar of /proc/PID/io, which include reaped children such as
rsync's receiver), and the destination's allocated size.

    python3 bench/blockbench.py [--runs 3] [--fs tmpfs,disk] [--size-gib 4]
"""
import argparse, json, os, random, shutil, statistics, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIB = 1 << 20


def make_image(path, size, allocated_fraction=0.10, extent=256 << 10, seed=1):
    rng = random.Random(seed)
    with open(path, "wb") as f:
        f.truncate(size)
        for _ in range(int(size * allocated_fraction) // extent):
            f.seek(rng.randrange(0, size - extent) & ~4095)
            f.write(rng.randbytes(extent))


def change_blocks(path, size, fraction, seed):
    """Writes 4 KiB into `fraction` of the 1 MiB blocks; returns the undo list."""
    rng = random.Random(seed)
    blocks = rng.sample(range(size // MIB), max(1, int(size // MIB * fraction)))
    undo = []
    with open(path, "r+b") as f:
        for b in blocks:
            off = b * MIB + rng.randrange(0, 256) * 4096
            f.seek(off)
            old = f.read(4096)
            f.seek(off)
            f.write(rng.randbytes(4096))
            undo.append((off, old))
    return undo


def undo(path, items):
    with open(path, "r+b") as f:
        for off, old in items:
            f.seek(off)
            f.write(old)


def run(cmd, env=None):
    """Runs cmd under sh so that the shell's /proc io (which includes its reaped child) can be read."""
    script = '"$@"; s=$?; cat /proc/$$/io > "$FERRY_BENCH_IO"; exit $s'
    io_file = f"/dev/shm/blockbench-io-{os.getpid()}"
    e = dict(os.environ, **(env or {}), FERRY_BENCH_IO=io_file)
    start = time.perf_counter()
    p = subprocess.Popen(["sh", "-c", script, "sh"] + cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=e)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - start
    err = p.stderr.read().decode(errors="replace")
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"{cmd[0]} failed with {code}: {err}")
    io = dict(line.split(": ") for line in open(io_file).read().split("\n") if line)
    return dict(wall=wall, rss_mib=usage.ru_maxrss / 1024, read=int(io["rchar"]), written=int(io["wchar"]))


def tools(ferry, state):
    return {
        "ferry": lambda s, d, first: [ferry, "block", "sync", s, d, "-q", "--state-dir", state],
        "rsync --inplace": lambda s, d, first: ["rsync", "-t", "--inplace", "--no-whole-file", s, d],
        "dd conv=sparse": lambda s, d, first: ["dd", f"if={s}", f"of={d}", "bs=1M", "conv=sparse" + ("" if first else ",notrunc"), "status=none"],
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--fs", default="tmpfs,disk")
    ap.add_argument("--size-gib", type=int, default=4)
    ap.add_argument("--tools", default="ferry,rsync --inplace,dd conv=sparse")
    ap.add_argument("--ferry", default=os.path.join(ROOT, ".build/release/ferry"))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench/out"))
    a = ap.parse_args()
    size = a.size_gib << 30
    bases = {"disk": "/tmp/ferry-blockbench", "tmpfs": "/dev/shm/ferry-blockbench"}
    results = []
    for fs in a.fs.split(","):
        base = bases[fs]
        os.makedirs(base, exist_ok=True)
        src = f"{base}/src-{a.size_gib}g.img"
        if not os.path.exists(src):
            make_image(src, size)
        state = f"{base}/state"
        ts = {k: v for k, v in tools(a.ferry, state).items() if k in a.tools.split(",")}
        names = list(ts)
        samples = {(n, ph): [] for n in names for ph in ("first", "incremental")}
        for r in range(a.runs):
            order = names[r % len(names):] + names[:r % len(names)]
            dsts = {}
            for name in order:
                dst = f"{base}/dst-{name.split()[0]}-{r}.img"
                for leftover in (dst, dst + ".ferry-blockmap"):
                    if os.path.exists(leftover):
                        os.remove(leftover)
                shutil.rmtree(state, ignore_errors=True)
                m = run(ts[name](src, dst, True))
                m["allocated"] = os.stat(dst).st_blocks * 512
                samples[(name, "first")].append(m)
                dsts[name] = dst
            changes = change_blocks(src, size, 0.01, 100 + r)
            try:
                for name in order:
                    m = run(ts[name](src, dsts[name], False))
                    m["allocated"] = os.stat(dsts[name]).st_blocks * 512
                    if subprocess.run(["cmp", "-s", src, dsts[name]]).returncode != 0:
                        sys.exit(f"{name}: the destination differs from the source")
                    samples[(name, "incremental")].append(m)
            finally:
                undo(src, changes)
            for name, dst in dsts.items():
                os.remove(dst)
                if os.path.exists(dst + ".ferry-blockmap"):
                    os.remove(dst + ".ferry-blockmap")
        for ph in ("first", "incremental"):
            ferry_t = statistics.median(x["wall"] for x in samples[("ferry", ph)]) if ("ferry", ph) in samples else None
            for name in names:
                xs = samples[(name, ph)]
                med = lambda k: statistics.median(x[k] for x in xs)
                results.append(dict(fs=fs, phase=ph, tool=name, median_s=round(med("wall"), 3), read_mb=round(med("read") / 1e6, 1),
                                    written_mb=round(med("written") / 1e6, 1), allocated_mb=round(med("allocated") / 1e6, 1),
                                    rss_mib=round(max(x["rss_mib"] for x in xs), 1),
                                    ferry_over_tool=round(ferry_t / med("wall"), 2) if ferry_t else None,
                                    runs=[round(x["wall"], 3) for x in xs]))
    os.makedirs(a.out, exist_ok=True)
    out = os.path.join(a.out, time.strftime("block-results-%Y%m%d-%H%M%S.json"))
    with open(out, "w") as f:
        json.dump(dict(size=size, results=results), f, indent=1)
    print(f"{'fs':6} {'phase':12} {'tool':16} {'median s':>9} {'read MB':>9} {'written MB':>11} {'dst MB':>8} {'RSS MiB':>8} {'ferry/tool':>10}")
    for x in results:
        print(f"{x['fs']:6} {x['phase']:12} {x['tool']:16} {x['median_s']:9.3f} {x['read_mb']:9.1f} {x['written_mb']:11.1f} "
              f"{x['allocated_mb']:8.1f} {x['rss_mib']:8.1f} {x['ferry_over_tool']:10}")
    print("results:", out)


if __name__ == "__main__":
    main()
