#!/usr/bin/env python3
"""Ferry vs `aws s3 sync` and `rclone sync` to S3-compatible servers on 127.0.0.1.

Starts its own servers (moto_server and a JuiceFS gateway on a fresh volume), uses the
data sets of bench.py (`small` = 20,000 files of 1-16 KiB in 200 directories, `large` = 4
files of 256 MiB, on tmpfs), and for each server and case runs each tool into its own
fresh prefix (after one untimed upload by Ferry that warms a fresh server for all of
them alike): a first upload, then a no-change re-run; then (S3 -> local) every tool
downloads the prefix Ferry uploaded in that round into a fresh tmpfs directory, after one
untimed download that warms the server's read path for all of them alike. Ferry's S3
request count for the no-change re-run comes from `ferry sync -v` ("S3 requests: N").
Every run also reports the client's CPU seconds (`wait4`), the server's (`/proc/PID/stat`
before and after) and the CPU bound they set: the shortest wall time that CPU allows on
this machine's cores (the server's alone where it can use one core only, as moto).

    python3 bench/s3bench.py [--cases small,large,sub2k] [--servers moto,juicefs] [--runs 1]
                             [--tools "ferry,aws s3 sync,rclone,rclone -t16"]

`sub2k` is the first 2,000 files of `small` (the JuiceFS gateway, with SQLite metadata,
needs minutes per tool for 20,000 small objects). The gateway's metadata engine is
BadgerDB unless `--juicefs-meta sqlite3` (the engine of the results before session 14).
The gateway keeps user metadata (`--object-meta`) unless `--juicefs-drop-metadata`. Its
volume is on the disk (`/tmp`) unless `--juicefs-under /dev/shm`.
"""
import argparse, json, os, random, shutil, socket, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import bench  # noqa: E402  (data generators)
from bench import free_port, wait_port  # noqa: E402


def start_moto():
    port = free_port()
    p = subprocess.Popen(["setpriv", "--pdeathsig", "KILL", "--", shutil.which("moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, p, "moto_server")
    # threads: how many cores the server can use at once (moto is Python: one, the GIL).
    return dict(name="moto", proc=p, endpoint=f"http://127.0.0.1:{port}", key="bench", secret="bench-secret", bucket=None,
                threads=1)


def start_juicefs(meta_engine="badger", object_meta=True, under="/tmp"):
    """A JuiceFS gateway on a fresh volume: data in files under `under` (the disk, or
    /dev/shm: there the disk's cost of creating files, which moves with how many were
    deleted lately, is not part of the gateway's), metadata in BadgerDB
    (embedded, one client: the gateway) or SQLite. With SQLite the gateway spent 8.2-9.2 s
    of CPU on 2,000 small PUTs, with BadgerDB 2.3 s (the same Ferry upload took 6.0 s and
    2.0 s): SQLite bounded every client, BadgerDB leaves the clients' own speed to show.
    With `object_meta` (`--object-meta`) the gateway keeps user metadata: Ferry's POSIX
    metadata arrives and its runs end in success; without, the gateway drops it silently and
    Ferry's first upload reports every file's metadata as not stored (exit 3, sessions 5-14)."""
    d = tempfile.mkdtemp(prefix="ferry-bench-jfs-", dir=under)
    jfs = shutil.which("juicefs")
    meta = f"badger://{d}/meta" if meta_engine == "badger" else f"sqlite3://{d}/meta.db"
    # --trash-days 0: deleted objects free their space at once (the large copies are dropped each round).
    subprocess.run([jfs, "format", meta, "vol1", "--storage", "file", "--bucket", f"{d}/data/", "--trash-days", "0"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port = free_port()
    env = dict(os.environ, MINIO_ROOT_USER="benchadmin", MINIO_ROOT_PASSWORD="bench-gateway-secret")
    p = subprocess.Popen(["setpriv", "--pdeathsig", "KILL", "--", jfs, "gateway", meta, f"127.0.0.1:{port}",
                          "--no-usage-report"] + (["--object-meta"] if object_meta else []), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, p, "juicefs gateway")
    return dict(name=f"juicefs-{meta_engine}" + ("" if object_meta else "-nometa") + ("" if under == "/tmp" else "-tmpfs"), proc=p, endpoint=f"http://127.0.0.1:{port}", key="benchadmin", secret="bench-gateway-secret",
                bucket="vol1", dir=d, threads=CORES, meta=meta_engine)


def env_for(s):
    base = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}  # rclone refuses a CA bundle over http
    return dict(base, AWS_ACCESS_KEY_ID=s["key"], AWS_SECRET_ACCESS_KEY=s["secret"], AWS_DEFAULT_REGION="us-east-1",
                AWS_PAGER="", RCLONE_CONFIG_B_TYPE="s3", RCLONE_CONFIG_B_PROVIDER="Other", RCLONE_CONFIG_B_ENDPOINT=s["endpoint"],
                RCLONE_CONFIG_B_ACCESS_KEY_ID=s["key"], RCLONE_CONFIG_B_SECRET_ACCESS_KEY=s["secret"], RCLONE_CONFIG_B_REGION="us-east-1")


CORES = os.cpu_count()


def cpu_bound(client_cpu, server_cpu, server_threads):
    """The shortest wall time the CPU the run took allows: server and client share this
    machine's cores, and the server can use at most `server_threads` of them."""
    return max((client_cpu + server_cpu) / CORES, server_cpu / server_threads)


def process_cpu(pid):
    """CPU seconds (user + system) a running process has used, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(cmd, env, server=None):
    """Runs `cmd`; returns wall seconds, peak RSS (MiB), exit code, stderr, and the CPU
    seconds of the client and (given its process) of the server over the run."""
    # stderr to a file, not a pipe: a long summary would fill the pipe and stall the child.
    with tempfile.TemporaryFile() as errfile:
        server_before = process_cpu(server.pid) if server else 0.0
        start = time.perf_counter()
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=errfile)
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - start
        server_cpu = process_cpu(server.pid) - server_before if server else 0.0
        errfile.seek(0)
        err = errfile.read().decode(errors="replace")
    code = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_maxrss / 1024, code, err, usage.ru_utime + usage.ru_stime, server_cpu


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default="small,large")
    ap.add_argument("--servers", default="moto,juicefs")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--tools", default="ferry,aws s3 sync,rclone,rclone -t16",
                    help="comma-separated subset of: ferry, aws s3 sync, rclone, rclone -t16, ferry --fast-list, rclone --fast-list")
    ap.add_argument("--ferry", default=os.path.join(ROOT, ".build/release/ferry"))
    ap.add_argument("--juicefs-meta", default="badger", choices=["badger", "sqlite3"],
                    help="the JuiceFS gateway's metadata engine (sessions 5-13 used sqlite3)")
    ap.add_argument("--juicefs-drop-metadata", action="store_true",
                    help="start the gateway without --object-meta, as sessions 5-14 did (it drops user metadata)")
    ap.add_argument("--no-warmup", action="store_true",
                    help="skip the untimed upload made before the rounds of each case (as before session 16)")
    ap.add_argument("--juicefs-under", default="/tmp",
                    help="where the gateway's volume lives: /tmp (the disk) or /dev/shm (tmpfs)")
    a = ap.parse_args()
    results = []
    for server_name in a.servers.split(","):
        s = start_moto() if server_name == "moto" else start_juicefs(a.juicefs_meta, not a.juicefs_drop_metadata, a.juicefs_under)
        env = env_for(s)
        bucket = s["bucket"] or f"bench-{random.randrange(10**9)}"
        if not s["bucket"]:
            subprocess.run(["aws", "--endpoint-url", s["endpoint"], "s3", "mb", f"s3://{bucket}"], env=env, check=True, stdout=subprocess.DEVNULL)
        for case in a.cases.split(","):
            src = f"/dev/shm/ferry-bench/data-{case}"
            if not os.path.isdir(src):
                if case == "sub2k":  # the first 2,000 files of `small` (20 directories)
                    bench.CASES["small"](f"/dev/shm/ferry-bench/data-small") if not os.path.isdir("/dev/shm/ferry-bench/data-small") else None
                    os.makedirs(src)
                    for d in range(20):
                        shutil.copytree(f"/dev/shm/ferry-bench/data-small/d{d:03}", f"{src}/d{d:03}", copy_function=shutil.copy2)
                else:
                    bench.CASES[case](src)
            tools = {
                "ferry": lambda p: [a.ferry, "sync", src, f"s3://{bucket}/{p}", "--endpoint-url", s["endpoint"], "-v"],
                "aws s3 sync": lambda p: ["aws", "--endpoint-url", s["endpoint"], "s3", "sync", src, f"s3://{bucket}/{p}", "--only-show-errors"],
                "rclone": lambda p: ["rclone", "sync", src, f"B:{bucket}/{p}"],
                "rclone -t16": lambda p: ["rclone", "sync", "--transfers", "16", src, f"B:{bucket}/{p}"],
                "ferry --fast-list": lambda p: [a.ferry, "sync", src, f"s3://{bucket}/{p}", "--endpoint-url", s["endpoint"], "-v", "--fast-list"],
                "rclone --fast-list": lambda p: ["rclone", "sync", "--fast-list", src, f"B:{bucket}/{p}"],
            }
            downloads = {
                "ferry": lambda p, d: [a.ferry, "sync", f"s3://{bucket}/{p}", d, "--endpoint-url", s["endpoint"], "-v"],
                "aws s3 sync": lambda p, d: ["aws", "--endpoint-url", s["endpoint"], "s3", "sync", f"s3://{bucket}/{p}", d, "--only-show-errors"],
                "rclone": lambda p, d: ["rclone", "sync", f"B:{bucket}/{p}", d],
                "rclone -t16": lambda p, d: ["rclone", "sync", "--transfers", "16", f"B:{bucket}/{p}", d],
                "ferry --fast-list": lambda p, d: [a.ferry, "sync", f"s3://{bucket}/{p}", d, "--endpoint-url", s["endpoint"], "-v", "--fast-list"],
                "rclone --fast-list": lambda p, d: ["rclone", "sync", "--fast-list", f"B:{bucket}/{p}", d],
            }
            warm_upload = tools["ferry"]
            tools = {k: v for k, v in tools.items() if k in a.tools.split(",")}

            def drop(prefix):  # moto keeps objects in memory: drop the 1 GiB copies
                subprocess.run(["aws", "--endpoint-url", s["endpoint"], "s3", "rm", "--recursive", f"s3://{bucket}/{prefix}"],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if not a.no_warmup:
                # One untimed upload first, so that no tool's timed run holds a fresh volume's
                # very first writes (session 15: Ferry's first round 21.7 s and 30.5 s of
                # gateway CPU, its later rounds 16-18 s and 23-26 s). In session 16 the
                # round after it was still the slowest, for every tool: rotation evens it out.
                warm = f"{case}-warmup-{random.randrange(10**6)}"
                wall, _, code, err, _, server_cpu = timed(warm_upload(warm), env, s["proc"])
                print(f"{s['name']} {case} warm-up upload (untimed): {wall:.2f}s exit {code} server cpu {server_cpu:.2f}s", flush=True)
                if code != 0:
                    sys.exit(f"the warm-up upload failed (exit {code}): {err.strip()[-2000:]}")
                if case == "large":
                    drop(warm)
            samples = {}
            requests = {}  # Ferry's no-change runs: S3 requests per tool name
            for r in range(a.runs):
                names = list(tools)
                names = names[r % len(names):] + names[:r % len(names)]
                prefixes = {}
                for name in names:
                    prefix = f"{case}-{name.split()[0]}-{name.replace(' ', '')}-{r}-{random.randrange(10**6)}"
                    prefixes[name] = prefix
                    for phase in ("first", "nochange"):
                        wall, rss, code, err, client_cpu, server_cpu = timed(tools[name](prefix), env, s["proc"])
                        if name.startswith("ferry") and phase == "nochange":
                            requests.setdefault(name, []).extend(int(l.split(":")[1]) for l in err.splitlines() if l.startswith("S3 requests:"))
                        samples.setdefault((name, phase), []).append((wall, rss, code, client_cpu, server_cpu))
                        bound = cpu_bound(client_cpu, server_cpu, s["threads"])
                        print(f"{s['name']} {case} {phase} {name}: {wall:.2f}s rss {rss:.0f}MiB exit {code} "
                              f"cpu client {client_cpu:.2f}s server {server_cpu:.2f}s -> cpu bound {bound:.2f}s", flush=True)
                # S3 -> local: every tool downloads the same prefix (the one Ferry uploaded in this
                # round, else the first) into a fresh tmpfs directory.
                shared = prefixes.get("ferry", next(iter(prefixes.values())))
                # One untimed download first: the objects were just written, and whichever tool
                # went first would otherwise meet the server's cold read path alone (the JuiceFS
                # gateway read 4 x 256 MiB in 2-4 s cold, in about 1 s warm).
                warm = f"/dev/shm/ferry-bench/download-{case}-warmup-{r}"
                timed(downloads["ferry"](shared, warm), env)
                shutil.rmtree(warm, ignore_errors=True)
                for name in names:
                    d = f"/dev/shm/ferry-bench/download-{case}-{name.replace(' ', '')}-{r}"
                    shutil.rmtree(d, ignore_errors=True)
                    wall, rss, code, err, client_cpu, server_cpu = timed(downloads[name](shared, d), env, s["proc"])
                    samples.setdefault((name, "download"), []).append((wall, rss, code, client_cpu, server_cpu))
                    print(f"{s['name']} {case} download {name}: {wall:.2f}s rss {rss:.0f}MiB exit {code} "
                          f"cpu client {client_cpu:.2f}s server {server_cpu:.2f}s", flush=True)
                    shutil.rmtree(d, ignore_errors=True)
                if case == "large":
                    for prefix in prefixes.values():
                        drop(prefix)
            for phase in ("first", "nochange", "download"):
                ft = statistics.median(x[0] for x in samples[("ferry", phase)])
                for name in tools:
                    t = statistics.median(x[0] for x in samples[(name, phase)])
                    runs = samples[(name, phase)]
                    client_cpu = statistics.median(x[3] for x in runs)
                    server_cpu = statistics.median(x[4] for x in runs)
                    results.append(dict(server=s["name"], case=case, phase=phase, tool=name, median_s=round(t, 3),
                                        peak_rss_mib=round(max(x[1] for x in runs), 1),
                                        exit=[x[2] for x in runs], ferry_over_tool=round(ft / t, 3),
                                        client_cpu_s=round(client_cpu, 2), server_cpu_s=round(server_cpu, 2),
                                        cpu_bound_s=round(cpu_bound(client_cpu, server_cpu, s["threads"]), 2)))
            results.append(dict(server=s["name"], case=case, ferry_nochange_requests=requests.get("ferry", []),
                                **({"ferry_fast_list_nochange_requests": requests["ferry --fast-list"]} if "ferry --fast-list" in requests else {})))
        s["proc"].kill()
        s["proc"].wait()
        if "dir" in s:
            shutil.rmtree(s["dir"], ignore_errors=True)  # the volume: up to gigabytes on the disk
    out = os.path.join(ROOT, "bench/out", time.strftime("s3-results-%Y%m%d-%H%M%S.json"))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    json.dump(results, open(out, "w"), indent=1)
    for x in results:
        print(json.dumps(x))
    print("results:", out)
    failed = [f"{x['server']} {x['case']} {x['phase']} {x['tool']}: exit {x['exit']}"
              for x in results if any(c != 0 for c in x.get("exit", []))]
    if failed:
        print("runs that did not succeed (a failed run's time is not a result):\n  " + "\n  ".join(failed))


if __name__ == "__main__":
    main()
