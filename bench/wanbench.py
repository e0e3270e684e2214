#!/usr/bin/env python3
"""Agent to agent across a slow link, against rsync, scp and tar over ssh on the same link.

    python3 bench/wanbench.py [--rtt 20] [--runs 3] [--set small|large|text|delta] [--files 20000]
                              [--via local|nfs] [--delta-mib 512] [--stream-kbit K]

Two agents on this machine: A next to the source, B next to the destination. With `--via
local` (the default) both read and write directories on tmpfs as their own file systems
(`ferry agent --local-root`, NFS locations on localhost), as the peers do; with `--via nfs`
both reach NFS exports of nfs-ganesha on tmpfs. A reaches B's data port only through
ferry-netem, which delays each direction by RTT/2. The task (source on A, destination on B)
is timed from StartTaskExecution until SUCCESS, with ONLY_FILES_TRANSFERRED verification
(the default read-back) and with VerifyMode NONE. The peers go over ssh (a private sshd, key
only) through a proxy of the same delay, from the source directory to a fresh destination:
`rsync -a`, `scp -O -rp` (the streaming protocol: scp's SFTP default waits a round trip per
file and takes minutes here), `tar c | ssh tar x`. Alternated; medians; ratios peer / Ferry; the
bytes each put on the link (both directions, counted by the proxies).

Sets: `small` (20,000 files of 1–16 KiB), `large` (4 × 256 MiB of random bytes), `text`
(200 × 512 KiB of log lines), `delta` (one file of --delta-mib MiB copied to both
destinations first; each run changes 1 MiB of it at a random offset, and Ferry and rsync
bring their copies up to date — scp and tar have no delta and are left out).

With --stream-kbit, each TCP connection through the proxies is capped at K kbit/s each way
(ferry-netem --rate-kbit): a path where one stream cannot fill the link (loss, a window or
a middlebox capping flows). Ferry's agents use 4 connections; ssh uses one.

Needs sshd (apt-get install openssh-server) and the release build (.build/release/ferry,
.build/release/ferry-netem); do not run it during a build.
"""
import argparse, os, random, shutil, statistics, subprocess, sys, tempfile, time


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import filebench  # noqa: E402
from filebench import free_port, wait_port  # noqa: E402
from agentbench import clean_up, run_task, save_results, start_agent_process, start_control_plane  # noqa: E402

NETEM = os.path.join(ROOT, ".build/release/ferry-netem")


class Site:
    """Site B as a network namespace of its own, joined to this host by a veth pair
    (10.77.0.1 here, 10.77.0.2 there) whose both ends are limited by `tc tbf` to `rate`."""
    NAME, HERE, THERE = "ferry-wanbench-b", "10.77.0.1", "10.77.0.2"

    def __init__(self, rate):
        self.remove()
        for cmd in (["ip", "netns", "add", self.NAME],
                    ["ip", "link", "add", "fwb-host", "type", "veth", "peer", "name", "fwb-site"],
                    ["ip", "link", "set", "fwb-site", "netns", self.NAME],
                    ["ip", "addr", "add", f"{self.HERE}/24", "dev", "fwb-host"],
                    ["ip", "link", "set", "fwb-host", "up"],
                    self.inside(["ip", "addr", "add", f"{self.THERE}/24", "dev", "fwb-site"]),
                    self.inside(["ip", "link", "set", "fwb-site", "up"]),
                    self.inside(["ip", "link", "set", "lo", "up"])):
            subprocess.run(cmd, check=True)
        if rate != "none":
            tbf = ["root", "tbf", "rate", rate, "burst", "256kb", "latency", "100ms"]
            subprocess.run(["tc", "qdisc", "add", "dev", "fwb-host"] + tbf, check=True)
            subprocess.run(self.inside(["tc", "qdisc", "add", "dev", "fwb-site"] + tbf), check=True)

    def inside(self, cmd):
        return ["ip", "netns", "exec", self.NAME] + cmd

    def remove(self):
        subprocess.run(["ip", "netns", "del", self.NAME], stderr=subprocess.DEVNULL)
        subprocess.run(["ip", "link", "del", "fwb-host"], stderr=subprocess.DEVNULL)


def proxy(procs, port, rtt, count_file, host="127.0.0.1", stream_kbit=0):
    cap = ["--rate-kbit", str(stream_kbit)] if stream_kbit else []
    p = subprocess.Popen([NETEM, "--listen", "0", "--to", f"{host}:{port}", "--delay-ms", str(rtt / 2), "--count-file", count_file] + cap,
                         stdout=subprocess.PIPE)
    procs.append(p)
    return int(p.stdout.readline().decode().split()[1])


def crossed(count_file):
    """Bytes the proxy has seen so far (its count file is refreshed every 100 ms)."""
    time.sleep(0.3)
    try:
        return int(open(count_file).read())
    except (OSError, ValueError):
        return 0


def start_sshd(work, procs, site=None):
    d = f"{work}/ssh"
    os.makedirs(d)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f"{d}/host"], check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f"{d}/user"], check=True)
    shutil.copy(f"{d}/user.pub", f"{d}/authorized_keys")
    port = free_port()
    with open(f"{d}/sshd_config", "w") as f:
        f.write(f"Port {port}\nListenAddress {site.THERE if site else '127.0.0.1'}\nHostKey {d}/host\nAuthorizedKeysFile {d}/authorized_keys\n"
                f"PermitRootLogin prohibit-password\nPasswordAuthentication no\nUsePAM no\nStrictModes no\nPidFile {d}/sshd.pid\n"
                f"Subsystem sftp internal-sftp\n")
    os.makedirs("/run/sshd", exist_ok=True)
    command = ["/usr/sbin/sshd", "-D", "-e", "-f", f"{d}/sshd_config"]
    procs.append(subprocess.Popen(site.inside(command) if site else command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    wait_port(port, host=site.THERE if site else "127.0.0.1")
    return port, f"{d}/user"


PEERS = ["rsync -a over ssh", "scp -O -rp", "tar | ssh tar"]


def peer_command(tool, ssh, src, dst):
    if tool.startswith("rsync"):
        return ["rsync", "-a", "-e", " ".join(ssh), f"{src}/", f"root@127.0.0.1:{dst}/"]
    if tool.startswith("scp"):
        # scp -r copies the directory itself into dst's parent under dst's name.
        return ["scp", "-O", "-rpq", "-P", ssh[2], *ssh[3:], src, f"root@127.0.0.1:{dst}"]
    return ["bash", "-c", f"tar -C {src} -cf - . | {' '.join(ssh)} root@127.0.0.1 'mkdir -p {dst} && tar -C {dst} -xf -'"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rtt", type=float, default=20)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--set", choices=["small", "large", "text", "delta"], default="small")
    ap.add_argument("--via", choices=["local", "nfs"], default="local")
    ap.add_argument("--delta-mib", type=int, default=512)
    ap.add_argument("--scp", action="store_true", help="run scp on the small set too (minutes per run)")
    ap.add_argument("--netns", action="store_true", help="site B (agent B, sshd) in a network namespace behind a tbf-limited veth")
    ap.add_argument("--rate", default="100mbit", help="the veth's tbf rate with --netns (or none)")
    ap.add_argument("--large-mib", type=int, default=256, help="size of each of the 4 files of the large set")
    ap.add_argument("--stream-kbit", type=int, default=0,
                    help="cap each TCP connection through the proxies at this rate (a lossy or flow-capped path), each direction")
    ap.add_argument("--ferry", default=os.path.join(ROOT, ".build/release/ferry"))
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="ferry-wanbench-", dir="/dev/shm")
    servers = filebench.Servers(work)
    export = f"{work}/export"
    if a.via == "nfs":
        servers.start_nfs()
    else:
        os.makedirs(export, exist_ok=True)
    if a.set == "small":
        files, size = filebench.gen_small(f"{export}/src", files=a.files)
    elif a.set == "large":
        files, size = filebench.gen_large(f"{export}/src", size=a.large_mib << 20)
    elif a.set == "text":
        files, size = filebench.gen_text(f"{export}/src")
    else:
        files, size = filebench.gen_large(f"{export}/src", files=1, size=a.delta_mib << 20)
    procs = []
    results = {"rtt_ms": a.rtt, "set": a.set, "via": a.via, "files": files, "bytes": size, "runs": a.runs,
               "site B": f"network namespace, veth tbf {a.rate}" if a.netns else "this host, loopback",
               "per-connection cap kbit": a.stream_kbit}
    site = Site(a.rate) if a.netns else None
    try:
        port, ca, ds, _ = start_control_plane(a.ferry, work, procs, ["--host", "0.0.0.0", "--tls-name", Site.HERE] if site else [])
        local = ["--local-root", export] if a.via == "local" else []

        def agent(name, extra, netns=None):
            placed = dict(netns=Site.NAME, cp_address=Site.HERE, address=Site.THERE) if netns else {}
            return start_agent_process(a.ferry, ds, port, ca, f"{work}/{name}", name, procs, heartbeat=2, extra=extra + local, **placed)[0]

        def location(path, agent_arn):
            host = "localhost" if a.via == "local" else "127.0.0.1"
            return ds.create_location_nfs(ServerHostname=host, Subdirectory=path, OnPremConfig={"AgentArns": [agent_arn]})["LocationArn"]

        data_port = free_port()
        ferry_count = f"{work}/ferry-link-bytes"
        far = proxy(procs, data_port, a.rtt, ferry_count, host=Site.THERE if site else "127.0.0.1", stream_kbit=a.stream_kbit)
        source_agent = agent("a", ["--data-port", str(free_port()), "--data-address", "127.0.0.1"])
        destination_agent = agent("b", ["--data-port", str(data_port), "--data-address", f"127.0.0.1:{far}"], netns=site)
        time.sleep(3)  # B's data endpoint arrives with its heartbeats
        src = location(f"{export}/src", source_agent)
        ssh_port, key = start_sshd(work, procs, site)
        ssh_count = f"{work}/ssh-link-bytes"
        ssh_far = proxy(procs, ssh_port, a.rtt, ssh_count, host=Site.THERE if site else "127.0.0.1", stream_kbit=a.stream_kbit)
        ssh = ["ssh", "-p", str(ssh_far), "-i", key, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]

        if a.set == "delta":
            tools = ["ferry", "rsync -a over ssh"]
            for tool in tools:  # both start from the same copy
                subprocess.run(["cp", "-a", f"{export}/src", f"{export}/dst-{tool.split()[0]}"], check=True)
            delta_task = ds.create_task(SourceLocationArn=src, DestinationLocationArn=location(f"{export}/dst-ferry", destination_agent),
                                        Options={"VerifyMode": "ONLY_FILES_TRANSFERRED"})["TaskArn"]
            rng = random.Random(7)
        else:
            # scp waits for an answer per file (2,000 small files took 137 s at 20 ms): it
            # runs on the small set only when asked (--scp).
            tools = ["ferry", "ferry verify none"] + [p for p in PEERS if a.set != "small" or a.scp or not p.startswith("scp")]
        samples = {t: [] for t in tools}
        link = {t: [] for t in tools}
        for r in range(a.runs):
            if a.set == "delta":
                with open(f"{export}/src/big0.bin", "r+b") as f:
                    f.seek(rng.randrange(0, (a.delta_mib - 1) << 20))
                    f.write(os.urandom(1 << 20))
            order = tools if r % 2 == 0 else list(reversed(tools))
            for tool in order:
                dst = f"{export}/dst-{tool.split()[0]}" if a.set == "delta" else f"{export}/dst-{tool.replace(' ', '').replace('|', '')}-{r}"
                count = ferry_count if tool.startswith("ferry") else ssh_count
                before = crossed(count)
                if not tool.startswith("ferry"):
                    start = time.perf_counter()
                    subprocess.run(peer_command(tool, ssh, f"{export}/src", dst), check=True)
                    samples[tool].append(time.perf_counter() - start)
                else:
                    if a.set == "delta":
                        task = delta_task
                    else:
                        options = {"VerifyMode": "NONE" if "none" in tool else "ONLY_FILES_TRANSFERRED"}
                        task = ds.create_task(SourceLocationArn=src, DestinationLocationArn=location(dst, destination_agent), Options=options)["TaskArn"]
                    described = {}
                    samples[tool].append(run_task(ds, task, described=described))
                    results[f"{tool} BytesCompressed / BytesTransferred"] = round(described["BytesCompressed"] / max(1, described["BytesTransferred"]), 4)
                link[tool].append(crossed(count) - before)
                print(f"{tool} run {r}: {samples[tool][-1]:.2f} s, {link[tool][-1]} bytes on the link", flush=True)
                if a.set == "large":  # 1 GiB a copy: tmpfs would fill up
                    shutil.rmtree(dst)
            if a.set == "delta":
                for tool in tools:
                    same = subprocess.run(["cmp", f"{export}/src/big0.bin", f"{export}/dst-{tool.split()[0]}/big0.bin"]).returncode == 0
                    if not same:
                        sys.exit(f"{tool}'s copy differs from the source after run {r}")
        for tool, s in samples.items():
            results[f"{tool} median s"] = round(statistics.median(s), 2)
            results[f"{tool} link bytes"] = int(statistics.median(link[tool]))
            if a.set != "delta":
                results[f"{tool} files/s"] = round(files / statistics.median(s))
                results[f"{tool} MB/s"] = round(size / 1e6 / statistics.median(s), 1)
        for tool in samples:
            if tool.startswith("ferry"):
                for peer in samples:
                    if not peer.startswith("ferry"):
                        results[f"{peer} / {tool}"] = round(results[f"{peer} median s"] / results[f"{tool} median s"], 2)
    finally:
        clean_up(procs, servers, work)
        if site:
            site.remove()
    save_results(results, "wan")


if __name__ == "__main__":
    main()
