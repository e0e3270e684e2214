#!/usr/bin/env python3
"""One execution spread over 1, 2 and 4 agents (a location naming several agents).

    python3 bench/poolbench.py [--runs 3] [--agents 1,2,4] [--files 20000] [--rtt 10]

Agents on this machine, each its own process; the source and the destination are NFS
exports of nfs-ganesha on tmpfs, and both locations name every agent of the round, so the
control plane cuts the tree into shares of its top-level directories (200 of them) and
leases them to the agents. With --rtt, the source's server is reached through ferry-netem
(its NFS and MOUNT ports proxied on 127.0.0.2, each direction delayed rtt/2; rpcbind
answers there too), as a file server at another site would be. Timed from StartTaskExecution to SUCCESS with
ONLY_FILES_TRANSFERRED; rounds alternated; medians and files per second.

Needs the release build (.build/release/ferry); do not run it during a build.
"""
import argparse, os, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import filebench  # noqa: E402
from agentbench import clean_up, run_task, save_results, start_agent_process, start_control_plane  # noqa: E402


def cpu_seconds(pid):
    """User + system CPU seconds a process has used so far."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


def machine_busy():
    """CPU seconds all cores spent not idle so far."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--agents", default="1,2,4")
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--ferry", default=os.path.join(ROOT, ".build/release/ferry"))
    ap.add_argument("--rtt", type=float, default=0, help="round trip (ms) added in front of the source's NFS server")
    a = ap.parse_args()
    counts = [int(n) for n in a.agents.split(",")]
    work = tempfile.mkdtemp(prefix="ferry-poolbench-", dir="/dev/shm")
    servers = filebench.Servers(work)
    servers.start_nfs()
    export = f"{work}/export"
    files, size = filebench.gen_small(f"{export}/src", files=a.files)
    procs = []
    results = {"files": files, "bytes": size, "runs": a.runs, "source rtt ms": a.rtt}
    source_host = "127.0.0.1"
    try:
        if a.rtt > 0:
            netem = os.path.join(os.path.dirname(a.ferry), "ferry-netem")
            for port in (servers.nfs_port, servers.mnt_port):
                procs.append(subprocess.Popen([netem, "--listen", f"127.0.0.2:{port}", "--to", f"127.0.0.1:{port}",
                                               "--delay-ms", str(a.rtt / 2)], stdout=subprocess.DEVNULL))
                filebench.wait_port(port, host="127.0.0.2")
            source_host = "127.0.0.2"
        port, ca, ds, _ = start_control_plane(a.ferry, work, procs)
        started = [start_agent_process(a.ferry, ds, port, ca, f"{work}/agent{i}", f"pool{i}", procs, heartbeat=2,
                                       extra=["--data-port", str(filebench.free_port()), "--data-address", "127.0.0.1"])
                   for i in range(max(counts))]
        agents = [arn for arn, _ in started]
        cpu = {n: [] for n in counts}
        time.sleep(3)
        samples = {n: [] for n in counts}
        for r in range(a.runs):
            for n in (counts if r % 2 == 0 else list(reversed(counts))):
                names = agents[:n]
                src = ds.create_location_nfs(ServerHostname=source_host, Subdirectory=f"{export}/src", OnPremConfig={"AgentArns": names})["LocationArn"]
                dst = ds.create_location_nfs(ServerHostname="127.0.0.1", Subdirectory=f"{export}/dst-{n}-{r}", OnPremConfig={"AgentArns": names})["LocationArn"]
                task = ds.create_task(SourceLocationArn=src, DestinationLocationArn=dst,
                                      Options={"VerifyMode": "ONLY_FILES_TRANSFERRED", "LogLevel": "BASIC"})["TaskArn"]
                described = {}
                before = (cpu_seconds(servers.ganesha.pid), sum(cpu_seconds(p.pid) for _, p in started), machine_busy())
                try:
                    samples[n].append(run_task(ds, task, described=described))
                    after = (cpu_seconds(servers.ganesha.pid), sum(cpu_seconds(p.pid) for _, p in started), machine_busy())
                    cpu[n].append([round(y - x, 1) for x, y in zip(before, after)])
                except SystemExit:
                    # What failed, from the execution's log, before the work tree goes.
                    log = subprocess.run([a.ferry, "server", "logs", "--data-dir", f"{work}/cp", described["TaskExecutionArn"]],
                                         capture_output=True, text=True).stdout
                    print("\n".join(line for line in log.splitlines() if "ERROR" in line)[:4000])
                    raise
                print(f"{n} agent(s) run {r}: {samples[n][-1]:.2f} s; CPU s: ganesha {cpu[n][-1][0]}, agents {cpu[n][-1][1]}, "
                      f"machine {cpu[n][-1][2]} of {os.cpu_count() * samples[n][-1]:.1f}", flush=True)
        for n, s in samples.items():
            results[f"{n} agents median s"] = round(statistics.median(s), 2)
            results[f"{n} agents files/s"] = round(files / statistics.median(s))
            results[f"{n} agents CPU s (ganesha, agents, machine)"] = cpu[n]
        base = results[f"{counts[0]} agents median s"]
        for n in counts[1:]:
            results[f"{n} agents speed-up"] = round(base / results[f"{n} agents median s"], 2)
    finally:
        clean_up(procs, servers, work)
    save_results(results, "pool")


if __name__ == "__main__":
    main()
