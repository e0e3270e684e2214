#!/usr/bin/env python3
"""Ferry vs rsync and cp on the same data in the same run.

Cases (issue 2's set; issue 5 grows it): `small` = 20,000 files of 1-16 KiB in 200
directories, `large` = 4 files of 256 MiB. Each case runs on the disk (/tmp) and on tmpfs
(/dev/shm): a first copy into a fresh destination, then a no-change re-run. Tools are
alternated within each round; old copies on the disk are moved aside, never deleted
between runs (ext4 is slow to create files right after many were deleted), and removed
only at the end. Wall time and peak RSS come from wait4(2) of each child.
"""
import argparse, json, os, random, shutil, socket, statistics, subprocess, sys, tempfile, time

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


def gen_large(path, files=4, size=256 << 20):
    rng = random.Random(2)
    os.makedirs(path)
    block = rng.randbytes(1 << 20)
    for i in range(files):
        with open(f"{path}/big{i}", "wb") as f:
            for k in range(size >> 20):
                f.write(bytes([k & 255, i]) + block[2:])
    return files, files * size


CASES = {"small": gen_small, "large": gen_large}


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


def tools(ferry):
    return {
        "ferry": lambda s, d: [ferry, "sync", s, d, "-q"],
        "rsync -a": lambda s, d: ["rsync", "-a", s + "/", d + "/"],
        "cp -a": lambda s, d: ["cp", "-a", s + "/.", d + "/"] if os.path.isdir(d) else ["cp", "-a", s, d],
    }


def run(cmd):
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
    return wall, usage.ru_maxrss / 1024  # MiB


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cases", default="small,large")
    ap.add_argument("--fs", default="disk,tmpfs")
    ap.add_argument("--ferry", default=os.path.join(ROOT, ".build/release/ferry"))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench/out"))
    a = ap.parse_args()
    bases = {"disk": "/tmp/ferry-bench", "tmpfs": "/dev/shm/ferry-bench"}
    results = []
    for fs in a.fs.split(","):
        base = bases[fs]
        trash = f"{base}/trash-{os.getpid()}"
        os.makedirs(trash, exist_ok=True)
        for case in a.cases.split(","):
            src = f"{base}/data-{case}"
            if not os.path.isdir(src):
                CASES[case](src)
            files = sum(len(fs_) for _, _, fs_ in os.walk(src))
            nbytes = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs_ in os.walk(src) for f in fs_)
            ts = tools(a.ferry)
            names = list(ts)
            samples = {(n, phase): [] for n in names for phase in ("first", "nochange")}
            for r in range(a.runs):
                order = names[r % len(names):] + names[:r % len(names)]
                for name in order:
                    dst = f"{base}/out-{case}-{name.split()[0]}-{r}"
                    if os.path.exists(dst):
                        shutil.move(dst, f"{trash}/{os.path.basename(dst)}-{time.time_ns()}")
                    samples[(name, "first")].append(run(ts[name](src, dst)))
                    samples[(name, "nochange")].append(run(ts[name](src, dst)))
                    if fs == "tmpfs" or case == "large":
                        shutil.rmtree(dst)  # no inode-allocator effect on tmpfs; large: few inodes, saves space
                    else:
                        shutil.move(dst, f"{trash}/{os.path.basename(dst)}-{time.time_ns()}")
            for phase in ("first", "nochange"):
                ferry_t = statistics.median(t for t, _ in samples[("ferry", phase)])
                for name in names:
                    t = statistics.median(x for x, _ in samples[(name, phase)])
                    rss = max(m for _, m in samples[(name, phase)])
                    results.append(dict(fs=fs, case=case, phase=phase, tool=name, median_s=round(t, 4),
                                        mb_s=round(nbytes / t / 1e6, 1), files_s=round(files / t),
                                        peak_rss_mib=round(rss, 1), ferry_over_tool=round(ferry_t / t, 3),
                                        runs=[round(x, 4) for x, _ in samples[(name, phase)]]))
        shutil.rmtree(trash, ignore_errors=True)
    os.makedirs(a.out, exist_ok=True)
    out = os.path.join(a.out, time.strftime("results-%Y%m%d-%H%M%S.json"))
    with open(out, "w") as f:
        json.dump(results, f, indent=1)
    print(f"{'fs':6} {'case':6} {'phase':9} {'tool':9} {'median s':>9} {'MB/s':>8} {'files/s':>9} {'RSS MiB':>8} {'ferry/tool':>10}")
    for x in results:
        print(f"{x['fs']:6} {x['case']:6} {x['phase']:9} {x['tool']:9} {x['median_s']:9.3f} {x['mb_s']:8.1f} {x['files_s']:9} {x['peak_rss_mib']:8.1f} {x['ferry_over_tool']:10.2f}")
    print(f"results: {out}")


if __name__ == "__main__":
    main()
