#!/usr/bin/env python3
"""Agent to agent across a slow link, against rsync over ssh on the same link.

    python3 bench/wanbench.py [--rtt 20] [--runs 3] [--set small|large|text] [--files 20000]

Two agents on this machine: A next to the source, B next to the destination, both NFS
exports of nfs-ganesha on tmpfs. A reaches B's data port only through ferry-netem, which
delays each direction by RTT/2. The task (source on A, destination on B) is timed from
StartTaskExecution until SUCCESS, with ONLY_FILES_TRANSFERRED verification (the default
read-back) and with VerifyMode NONE. The peer is `rsync -a` over ssh (a private sshd, key
only) through a proxy of the same delay, from the source directory to a fresh destination.
Alternated; medians; ratios rsync / Ferry. Sets: `small` (20,000 files of 1–16 KiB), `large`
(4 × 256 MiB of random bytes), `text` (200 × 512 KiB of log lines); for Ferry, what the data
took on the link (BytesCompressed) against BytesTransferred.

Needs sshd (apt-get install openssh-server) and the release build (.build/release/ferry,
.build/release/ferry-netem); do not run it during a build.
"""
import argparse, os, shutil, statistics, subprocess, sys, tempfile, time


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import filebench  # noqa: E402
from filebench import free_port, wait_port  # noqa: E402
from agentbench import clean_up, run_task, save_results, start_agent_process, start_control_plane  # noqa: E402

NETEM = os.path.join(ROOT, ".build/release/ferry-netem")


def proxy(procs, port, rtt):
    p = subprocess.Popen([NETEM, "--listen", "0", "--to", f"127.0.0.1:{port}", "--delay-ms", str(rtt / 2)], stdout=subprocess.PIPE)
    procs.append(p)
    return int(p.stdout.readline().decode().split()[1])


def start_sshd(work, procs):
    d = f"{work}/ssh"
    os.makedirs(d)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f"{d}/host"], check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f"{d}/user"], check=True)
    shutil.copy(f"{d}/user.pub", f"{d}/authorized_keys")
    port = free_port()
    with open(f"{d}/sshd_config", "w") as f:
        f.write(f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host\nAuthorizedKeysFile {d}/authorized_keys\n"
                f"PermitRootLogin prohibit-password\nPasswordAuthentication no\nUsePAM no\nStrictModes no\nPidFile {d}/sshd.pid\n")
    os.makedirs("/run/sshd", exist_ok=True)
    procs.append(subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", f"{d}/sshd_config"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    wait_port(port)
    return port, f"{d}/user"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rtt", type=float, default=20)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--set", choices=["small", "large", "text"], default="small")
    ap.add_argument("--ferry", default=os.path.join(ROOT, ".build/release/ferry"))
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="ferry-wanbench-", dir="/dev/shm")
    servers = filebench.Servers(work)
    servers.start_nfs()
    export = f"{work}/export"
    if a.set == "small":
        files, size = filebench.gen_small(f"{export}/src", files=a.files)
    elif a.set == "large":
        files, size = filebench.gen_large(f"{export}/src")
    else:
        files, size = filebench.gen_text(f"{export}/src")
    procs = []
    results = {"rtt_ms": a.rtt, "set": a.set, "files": files, "bytes": size, "runs": a.runs}
    try:
        port, ca, ds, _ = start_control_plane(a.ferry, work, procs)

        def agent(name, extra):
            return start_agent_process(a.ferry, ds, port, ca, f"{work}/{name}", name, procs, heartbeat=2, extra=extra)[0]

        data_port = free_port()
        far = proxy(procs, data_port, a.rtt)
        source_agent = agent("a", ["--data-port", str(free_port()), "--data-address", "127.0.0.1"])
        destination_agent = agent("b", ["--data-port", str(data_port), "--data-address", f"127.0.0.1:{far}"])
        time.sleep(3)  # B's data endpoint arrives with its heartbeats
        src = ds.create_location_nfs(ServerHostname="127.0.0.1", Subdirectory=f"{export}/src", OnPremConfig={"AgentArns": [source_agent]})["LocationArn"]
        ssh_port, key = start_sshd(work, procs)
        ssh_far = proxy(procs, ssh_port, a.rtt)

        samples = {"ferry": [], "ferry verify none": [], "rsync -a over ssh": []}
        for r in range(a.runs):
            order = list(samples) if r % 2 == 0 else list(reversed(samples))
            for tool in order:
                dst = f"{export}/dst-{tool.replace(' ', '')}-{r}"
                if tool.startswith("rsync"):
                    start = time.perf_counter()
                    subprocess.run(["rsync", "-a", "-e", f"ssh -p {ssh_far} -i {key} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
                                    f"{export}/src/", f"root@127.0.0.1:{dst}/"], check=True)
                    samples[tool].append(time.perf_counter() - start)
                else:
                    dloc = ds.create_location_nfs(ServerHostname="127.0.0.1", Subdirectory=dst, OnPremConfig={"AgentArns": [destination_agent]})["LocationArn"]
                    options = {"VerifyMode": "NONE" if "none" in tool else "ONLY_FILES_TRANSFERRED"}
                    task = ds.create_task(SourceLocationArn=src, DestinationLocationArn=dloc, Options=options)["TaskArn"]
                    described = {}
                    samples[tool].append(run_task(ds, task, described=described))
                    results[f"{tool} BytesCompressed / BytesTransferred"] = round(described["BytesCompressed"] / max(1, described["BytesTransferred"]), 3)
                print(f"{tool} run {r}: {samples[tool][-1]:.2f} s", flush=True)
        for tool, s in samples.items():
            results[f"{tool} median s"] = round(statistics.median(s), 2)
            results[f"{tool} files/s"] = round(files / statistics.median(s))
            results[f"{tool} MB/s"] = round(size / 1e6 / statistics.median(s), 1)
        for tool in ("ferry", "ferry verify none"):
            results[f"rsync / {tool}"] = round(results["rsync -a over ssh median s"] / results[f"{tool} median s"], 2)
    finally:
        clean_up(procs, servers, work)
    save_results(results, "wan")


if __name__ == "__main__":
    main()
