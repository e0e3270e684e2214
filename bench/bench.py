#!/usr/bin/env python3
"""Ferry vs cp, rsync, tar and rclone on the same data in the same run (local → local).

    python3 bench/bench.py [--runs 3] [--cases small,medium,large,mixed] [--fs disk,tmpfs]
                           [--tools "ferry,rsync -a,cp -a,tar|tar,rclone,rclone -t16"] [--floors]
    python3 bench/bench.py --cases tree1m --fs tmpfs --runs 1 --tools "ferry,rsync -a"

Cases: `small` = 20,000 files of 1-16 KiB in 200 directories; `medium` = 1,000 files of
256 KiB-4 MiB in 20 directories; `large` = 4 files of 256 MiB; `large512` = 4 of 512 MiB;
`mixed` = files with symlinks, hard links, sparse files and empty directories;
`tree1m` = 1,000,000 entries (1,000 directories of 999 empty files) for scan speed and
memory; `flat200k` / `flat2m` = one directory of 200,000 / 2,000,000 empty files (made in
a shuffled order), for the listing's spill to disk (peak RSS must not follow the
directory's size). Each case runs on the disk (/tmp, ext4) and on tmpfs (/dev/shm). Phases, each
tool into its own destination: `first` copy, `nochange` re-run, `changed` re-run after 1 %
of the files changed (same size, new bytes, new mtime), and for the large cases `onechange`
(4 KiB rewritten in one file). cp and tar have no incremental mode: they run `first` only.
Tools alternate within each round (the order rotates); each tool runs all its phases on
its own copy before the next tool starts; old copies on the disk are moved aside, never
deleted between runs (ext4 creates files slowly right after many were
deleted), and removed at the end. Wall time and peak RSS come from wait4(2) of each child.
On the disk each run starts after a `sync` (untimed), so no tool pays for the writeback of
the copy before it, and the `sync` after it is timed apart (`+flush s`: wall time plus
the flush of what the tool left dirty, i.e. until the data is on the disk).
`--floors` measures what bounds the cases: file creation on the disk and tmpfs, disk write
bandwidth, and hashing (xxhsum -H2 = XXH3-128, Ferry's checksum, against sha256sum).
"""
import argparse, json, os, random, shutil, socket, stat, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def gen_small(path, files=20000, dirs=200):
    rng = random.Random(1)
    os.makedirs(path)
    for d in range(dirs):
        os.mkdir(f"{path}/d{d:03}")
    total = 0
    for i in range(files):
        size = rng.randint(1024, 16 * 1024)
        with open(f"{path}/d{i % dirs:03}/f{i:05}", "wb") as f:
            f.write(rng.randbytes(size))
        total += size
    return files, total


def gen_medium(path, files=1000, dirs=20):
    rng = random.Random(3)
    os.makedirs(path)
    for d in range(dirs):
        os.mkdir(f"{path}/d{d:02}")
    block = rng.randbytes(4 << 20)
    for i in range(files):
        size = rng.randint(256 << 10, 4 << 20)
        with open(f"{path}/d{i % dirs:02}/m{i:04}", "wb") as f:
            f.write(bytes([i & 255, i >> 8]) + block[2:size])


def gen_large(path, files=4, size=256 << 20):
    rng = random.Random(2)
    os.makedirs(path)
    block = rng.randbytes(1 << 20)
    for i in range(files):
        with open(f"{path}/big{i}", "wb") as f:
            for k in range(size >> 20):
                f.write(bytes([k & 255, i]) + block[2:])
    return files, files * size


def gen_mixed(path):
    rng = random.Random(4)
    os.makedirs(path)
    for d in range(10):
        os.makedirs(f"{path}/d{d}/sub")
        for i in range(50):
            with open(f"{path}/d{d}/f{i}", "wb") as f:
                f.write(rng.randbytes(rng.randint(0, 64 << 10)))
            if i % 5 == 0:
                os.symlink(f"f{i}", f"{path}/d{d}/link{i}")
                os.link(f"{path}/d{d}/f{i}", f"{path}/d{d}/sub/hard{i}")
        for e in range(10):
            os.makedirs(f"{path}/d{d}/empty{e}")
        with open(f"{path}/d{d}/sparse.img", "wb") as f:  # 64 MiB, 1 MiB of data
            f.seek(32 << 20)
            f.write(rng.randbytes(1 << 20))
            f.truncate(64 << 20)


def gen_tree1m(path, dirs=1000, per=999):
    os.makedirs(path)
    for d in range(dirs):
        os.mkdir(f"{path}/d{d:04}")
        for i in range(per):
            os.close(os.open(f"{path}/d{d:04}/e{i:04}", os.O_CREAT | os.O_WRONLY, 0o644))


def gen_flat(path, count):
    """One directory of `count` empty files, created in a shuffled order (as a spool or a
    flat S3 prefix fills): the case for the merge-join's spill to disk."""
    os.makedirs(path)
    order = list(range(count))
    random.Random(7).shuffle(order)
    for i in order:
        os.close(os.open(f"{path}/e{i:08}", os.O_CREAT | os.O_WRONLY, 0o644))


CASES = {"small": gen_small, "medium": gen_medium, "large": gen_large,
         "large512": lambda p: gen_large(p, size=512 << 20), "mixed": gen_mixed, "tree1m": gen_tree1m,
         "flat200k": lambda p: gen_flat(p, 200_000), "flat2m": lambda p: gen_flat(p, 2_000_000)}


def warm(src):
    """Reads every file of `src` once, untimed, so that each tool finds the source in the
    page cache. Listing it (below) brings back its inodes, but not their data: after a
    `drop_caches` the first tool of the first round read 170 MB from the disk (Ferry
    2.93 s in round 1 of the small case on the disk, 0.37-0.42 s in the next rounds)."""
    for root, _, files in os.walk(src):
        for name in files:
            path = os.path.join(root, name)
            if stat.S_ISREG(os.lstat(path).st_mode):
                with open(path, "rb") as f:
                    while f.read(1 << 20):
                        pass


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, proc, what):
    for _ in range(300):
        if proc.poll() is not None:
            sys.exit(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"{what} did not start")


def tools(ferry, case, delete=False):
    """The commands compared. With delete, the incremental tools also remove what the source no longer has."""
    rsync = (["rsync", "-aHAXS"] if case == "mixed" else ["rsync", "-a"]) + (["--delete"] if delete else [])
    return {
        "ferry": lambda s, d: [ferry, "sync", s, d, "-q"] + (["--delete"] if delete else []),
        "rsync -a": lambda s, d: rsync + [s + "/", d + "/"],
        "cp -a": lambda s, d: ["cp", "-a", s, d],
        "tar|tar": lambda s, d: ["sh", "-c", f"mkdir -p '{d}' && tar -C '{s}' -cf - . | tar -C '{d}' -xpf -"],
        "rclone": lambda s, d: ["rclone", "sync", "--links", s, d],
        "rclone -t16": lambda s, d: ["rclone", "sync", "--links", "--transfers", "16", s, d],
    }


FULL_COPY_ONLY = {"cp -a", "tar|tar"}


def run(cmd, disk=False):
    """Runs one tool; returns (wall s, peak RSS MiB, wall + flush s). On the disk every run
    starts with nothing dirty in the page cache (`sync` first, untimed), so no tool pays for
    the writeback of the one before it; the flush of what it left dirty is timed apart."""
    if disk:
        os.sync()
    # stderr to a file, not a pipe: a long message would fill the pipe and stall the child.
    with tempfile.TemporaryFile() as errfile:
        start = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=errfile)
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - start
        errfile.seek(0)
        err = errfile.read().decode(errors="replace")
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"{cmd[0]} failed with {code}: {err}")
    flushed = wall
    if disk:
        start = time.perf_counter()
        os.sync()
        flushed += time.perf_counter() - start
    return wall, usage.ru_maxrss / 1024, flushed  # MiB


def change_one_percent(src, seed):
    """Rewrites the start of 1 % of the files (same size, new bytes, mtime + 1 s). Returns the undo list."""
    rng = random.Random(seed)
    files = sorted(os.path.join(r, f) for r, _, fs in os.walk(src) for f in fs if not os.path.islink(os.path.join(r, f)))
    undo = []
    for path in rng.sample(files, max(1, len(files) // 100)):
        undo.append(rewrite(path, 0, rng.randbytes(min(os.stat(path).st_size, 64))))
    return undo


def change_one_block(src, seed):
    """Rewrites 4 KiB in the first file. Returns the undo list."""
    rng = random.Random(seed)
    path = sorted(os.path.join(r, f) for r, _, fs in os.walk(src) for f in fs)[0]
    return [rewrite(path, rng.randrange(0, os.stat(path).st_size - 4096), rng.randbytes(4096))]


def rewrite(path, offset, data):
    st = os.stat(path)
    with open(path, "r+b") as f:
        f.seek(offset)
        old = f.read(len(data))
        f.seek(offset)
        f.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    return path, offset, old, st


def rename_directories(src, seed):
    """Renames every top-level directory of the source, so a sync with delete removes and recreates
    every file below them (the ext4 freed-inode effect at full strength). Returns the undo list."""
    undo = []
    for name in sorted(os.listdir(src)):
        old = os.path.join(src, name)
        if os.path.isdir(old) and not os.path.islink(old):
            new = f"{old}.r{seed}"
            os.rename(old, new)
            undo.append(("rename", new, old))
    return undo


def undo_changes(undo):
    """Puts the data set back as generated, so every run and tool sees the same data."""
    for item in reversed(undo):
        if item[0] == "rename":
            os.rename(item[1], item[2])
            continue
        path, offset, old, st = item
        with open(path, "r+b") as f:
            f.seek(offset)
            f.write(old)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def floors(bases):
    out = {}
    for fs, base in bases.items():
        d = f"{base}/floor-{time.time_ns()}"
        os.makedirs(d)
        n = 20000
        for k in range(200):
            os.mkdir(f"{d}/d{k:03}")
        start = time.perf_counter()
        for i in range(n):
            os.close(os.open(f"{d}/d{i % 200:03}/f{i}", os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644))
        out[f"create µs/file {fs}"] = round((time.perf_counter() - start) / n * 1e6, 1)
        small = f"{base}/data-small"
        if os.path.isdir(small):
            # The small case's own floor: its 20,000 files written with their bytes (open, write,
            # close, nothing else: no reading, no metadata, no checksum), one thread; the disk
            # starts clean and the flush afterwards is timed too.
            files = [(os.path.relpath(os.path.join(r, f), small), os.path.getsize(os.path.join(r, f)))
                     for r, _, fs_ in os.walk(small) for f in fs_]
            payload = os.urandom(max(size for _, size in files))
            w = f"{d}/small"
            for r, dirs, _ in os.walk(small):
                for x in dirs:
                    os.makedirs(os.path.join(w, os.path.relpath(os.path.join(r, x), small)), exist_ok=True)
            if fs == "disk":
                os.sync()
            start = time.perf_counter()
            for rel, size in files:
                fd = os.open(os.path.join(w, rel), os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644)
                os.write(fd, payload[:size])
                os.close(fd)
            written = time.perf_counter() - start
            out[f"small set written, s {fs}"] = round(written, 3)
            if fs == "disk":
                os.sync()
                out[f"small set written + flush, s {fs}"] = round(time.perf_counter() - start, 3)
        if fs == "disk":
            start = time.perf_counter()
            subprocess.run(["dd", "if=/dev/zero", f"of={d}/zeros", "bs=1M", "count=1024", "conv=fdatasync"],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            out["disk write MB/s (1 GiB, fdatasync)"] = round(1024 * 1.048576 / (time.perf_counter() - start), 1)
        shutil.move(d, f"{base}/trash-floor-{time.time_ns()}") if fs == "disk" else shutil.rmtree(d)
    big = "/dev/shm/ferry-bench/data-large/big0"
    if os.path.exists(big):
        for name, cmd in (("xxhsum -H2 (XXH3-128)", ["xxhsum", "-H2", big]), ("sha256sum", ["sha256sum", big])):
            if shutil.which(cmd[0]):
                t, _, _ = run(cmd)
                out[f"{name} MB/s"] = round(os.path.getsize(big) / t / 1e6, 1)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cases", default="small,large")
    ap.add_argument("--fs", default="disk,tmpfs")
    ap.add_argument("--tools", default="ferry,rsync -a,cp -a", help="comma-separated: ferry, rsync -a, cp -a, tar|tar, rclone, rclone -t16")
    ap.add_argument("--phases", default="first,nochange", help="first, nochange, changed, onechange, recreate")
    ap.add_argument("--floors", action="store_true")
    ap.add_argument("--ferry", default=os.path.join(ROOT, ".build/release/ferry"))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench/out"))
    a = ap.parse_args()
    bases = {"disk": "/tmp/ferry-bench", "tmpfs": "/dev/shm/ferry-bench"}
    results = []
    phases_wanted = a.phases.split(",")
    for fs in a.fs.split(","):
        base = bases[fs]
        trash = f"{base}/trash-{os.getpid()}"
        os.makedirs(trash, exist_ok=True)
        for case in a.cases.split(","):
            src = f"{base}/data-{case}"
            if not os.path.isdir(src):
                CASES[case](src)
            files = sum(len(fs_) for _, _, fs_ in os.walk(src))
            nbytes = sum(os.lstat(os.path.join(r, f)).st_size for r, _, fs_ in os.walk(src) for f in fs_)
            warm(src)
            ts = {k: v for k, v in tools(a.ferry, case).items() if k in a.tools.split(",")}
            names = list(ts)
            phases = ["first"] + [p for p in ("nochange", "changed", "onechange", "recreate") if p in phases_wanted
                                  and (p != "onechange" or case.startswith("large")) and (p == "nochange" or case not in ("tree1m", "flat200k", "flat2m"))]
            samples = {(n, phase): [] for n in names for phase in phases}
            for r in range(a.runs):
                order = names[r % len(names):] + names[:r % len(names)]
                # Each tool runs all its phases on its own copy, which goes before the next tool
                # starts: copies piling up in a round (six of the 2.1 GB medium set on tmpfs) made
                # each tool slower the later it came (0.9 s first, 1.9 s fifth).
                for name in order:
                    dst = f"{base}/out-{case}-{name.replace(' ', '').replace('|', '')}-{r}"
                    if os.path.exists(dst):
                        shutil.move(dst, f"{trash}/{os.path.basename(dst)}-{time.time_ns()}")
                    samples[(name, "first")].append(run(ts[name](src, dst), fs == "disk"))
                    if "nochange" in phases and name not in FULL_COPY_ONLY:
                        samples[(name, "nochange")].append(run(ts[name](src, dst), fs == "disk"))
                    for phase, change in (("changed", change_one_percent), ("onechange", change_one_block),
                                          ("recreate", rename_directories)):
                        if phase not in phases or name in FULL_COPY_ONLY:
                            continue
                        undo = change(src, 1000 + r)  # the same change for every tool of this round
                        try:
                            samples[(name, phase)].append(run(tools(a.ferry, case, delete=phase == "recreate")[name](src, dst), fs == "disk"))
                        finally:
                            undo_changes(undo)
                    if fs == "tmpfs" or case.startswith("large") or case in ("medium", "tree1m", "flat200k", "flat2m"):
                        shutil.rmtree(dst)  # no inode-allocator effect on tmpfs; few inodes here, and it saves space
                    else:
                        shutil.move(dst, f"{trash}/{os.path.basename(dst)}-{time.time_ns()}")
            for phase in phases:
                if not samples[("ferry", phase)]:
                    continue
                ferry_t = statistics.median(t for t, _, _ in samples[("ferry", phase)])
                ferry_f = statistics.median(f for _, _, f in samples[("ferry", phase)])
                for name in names:
                    if not samples[(name, phase)]:
                        continue
                    t = statistics.median(x for x, _, _ in samples[(name, phase)])
                    flushed = statistics.median(f for _, _, f in samples[(name, phase)])
                    rss = max(m for _, m, _ in samples[(name, phase)])
                    results.append(dict(fs=fs, case=case, phase=phase, tool=name, median_s=round(t, 4),
                                        mb_s=round(nbytes / t / 1e6, 1), files_s=round(files / t),
                                        peak_rss_mib=round(rss, 1), ferry_over_tool=round(ferry_t / t, 3),
                                        median_flushed_s=round(flushed, 4), ferry_over_tool_flushed=round(ferry_f / flushed, 3),
                                        runs=[round(x, 4) for x, _, _ in samples[(name, phase)]]))
        shutil.rmtree(trash, ignore_errors=True)
    floor = floors(bases) if a.floors else {}
    os.makedirs(a.out, exist_ok=True)
    out = os.path.join(a.out, time.strftime("results-%Y%m%d-%H%M%S.json"))
    with open(out, "w") as f:
        json.dump({"results": results, "floors": floor}, f, indent=1)
    print(f"{'fs':6} {'case':8} {'phase':9} {'tool':11} {'median s':>9} {'MB/s':>8} {'files/s':>9} {'RSS MiB':>8} {'ferry/tool':>10}"
          f" {'+flush s':>9} {'ferry/tool':>10}")
    for x in results:
        flushed = f" {x['median_flushed_s']:9.3f} {x['ferry_over_tool_flushed']:10.2f}" if x["fs"] == "disk" else ""
        print(f"{x['fs']:6} {x['case']:8} {x['phase']:9} {x['tool']:11} {x['median_s']:9.3f} {x['mb_s']:8.1f} {x['files_s']:9} "
              f"{x['peak_rss_mib']:8.1f} {x['ferry_over_tool']:10.2f}{flushed}")
    for k, v in floor.items():
        print(f"floor: {k}: {v}")
    print(f"results: {out}")


if __name__ == "__main__":
    main()
