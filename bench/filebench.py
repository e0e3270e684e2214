#!/usr/bin/env python3
"""Ferry's own NFS and SMB clients over an added round trip, against their peers, on the
same data in the same run (see docs/PERFORMANCE.md).

    python3 bench/filebench.py [--rtt 0,2,10] [--cases small,large] [--protocols nfs,smb]
                               [--runs 1] [--serial-files 2000] [--fs tmpfs|disk]

Servers, started here on 127.0.0.1 with private configurations: nfs-ganesha (VFS backend,
NFSv3; rpcbind for its MOUNT service) and smbd (SMB3, a user made with smbpasswd), each
exporting a directory on --fs (tmpfs: /dev/shm; disk: /var/tmp). The source is on the same
file system. A round trip of RTT ms is added by ferry-netem (built with Ferry), which holds
every byte RTT/2 ms in each direction; RTT 0 is the server itself, no proxy.

Cases (local → server, each tool into a destination of its own, removed after its run):
`small` = 20,000 files of 1-16 KiB in 200 directories; `large` = 4 files of 256 MiB.

NFS: `ferry` (defaults: 16 items, 2 connections, every READ/WRITE of a file at once);
`ferry-serial` (--parallel 1 --nfs-connections 1: one item in flight, the cost a serial
tool pays); at RTT 0 also `ferry-local` (the same copy to a local directory, no NFS).
`ferry-noverify` (asked for): `--verify-mode none`, the same work as the peers, which
read nothing back. SMB: `ferry` (32 sessions); `rclone` (rclone sync to its SMB backend, its defaults:
4 transfers, 8 checkers); `smbclient` (recursive mput, one request at a time).

One-at-a-time tools (ferry-serial, smbclient) at RTT > 0 copy only the first
--serial-files files of `small` (2,000: at 10 ms a serial copy of 20,000 files takes over
a quarter of an hour); their speed is compared in files per second, and so is every tool's.
For each run: wall time, files/s and MB/s, and the CPU seconds (user + system) of the
client (wait4), the proxy, and the server (ganesha; smbd with its reaped children), so the
bound of each case can be told. Results go to docs/results/filebench-DATE.json.
"""
import argparse, datetime, json, os, pwd, random, shutil, socket, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FERRY = f"{ROOT}/.build/release/ferry"
NETEM = f"{ROOT}/.build/release/ferry-netem"
USER, PASSWORD = "ferrysmb", "Ferry-Bench-123"


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


def gen_subset(small, path, files):
    """The first `files` files of `small` (hard links: the same bytes, no copy)."""
    os.makedirs(path)
    total = n = 0
    for d in sorted(os.listdir(small)):
        os.mkdir(f"{path}/{d}")
    for i in range(files):
        rel = f"d{i % 200:03}/f{i:05}"
        os.link(f"{small}/{rel}", f"{path}/{rel}")
        total += os.path.getsize(f"{path}/{rel}")
        n += 1
    return n, total


def gen_text(path, files=200, size=512 << 10):
    """Log-like text (compresses about 5:1 with zstd's fastest level)."""
    rng = random.Random(3)
    words = ["GET", "POST", "/api/v1/items", "/static/app.js", "200", "404", "user", "session", "cache", "miss", "hit", "ms"]
    os.makedirs(path)
    for i in range(files):
        lines, n = [], 0
        while n < size:
            line = f"2026-12-07T10:{i % 60:02}:{n % 60:02}Z host{rng.randrange(40)} " + " ".join(rng.choice(words) for _ in range(8)) + f" {rng.randrange(100000)}\n"
            lines.append(line)
            n += len(line)
        with open(f"{path}/log{i:03}.txt", "w") as f:
            f.write("".join(lines)[:size])
    return files, files * size


def gen_large(path, files=4, size=256 << 20):
    os.makedirs(path)
    for i in range(files):
        with open(f"{path}/big{i}.bin", "wb") as f:
            f.write(os.urandom(size))
    return files, files * size


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, seconds=20, host="127.0.0.1"):
    end = time.time() + seconds
    while time.time() < end:
        with socket.socket() as s:
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.1)
    sys.exit(f"nothing listens on port {port} after {seconds} s")


def cpu(pid, children=False):
    """User + system CPU seconds of a process (with its reaped children)."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if children else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


def run(argv, **kw):
    """Runs argv; (wall seconds, client CPU seconds, status, output tail)."""
    start = time.monotonic()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.monotonic() - start
    return wall, usage.ru_utime + usage.ru_stime, os.waitstatus_to_exitcode(status), out.decode(errors="replace")[-600:]


class Servers:
    def __init__(self, base):
        self.base = base
        self.procs = []
        self.force_proxy = False
        os.makedirs(f"{base}/export", exist_ok=True)
        os.chmod(f"{base}/export", 0o777)

    def start_nfs(self):
        if subprocess.run(["rpcinfo", "-p", "127.0.0.1"], capture_output=True).returncode != 0:
            rpcbind = shutil.which("rpcbind") or "/usr/sbin/rpcbind"
            self.procs.append(subprocess.Popen([rpcbind, "-f", "-w"]))
            wait_port(111)
        self.nfs_port, self.mnt_port = free_port(), free_port()
        conf = f"{self.base}/ganesha.conf"
        export = f"{self.base}/export"
        with open(conf, "w") as f:
            f.write(f"""NFS_CORE_PARAM {{ NFS_Port = {self.nfs_port}; MNT_Port = {self.mnt_port}; Protocols = 3; Bind_addr = 127.0.0.1; Enable_NLM = false; Enable_RQUOTA = false; }}
NFSV4 {{ Graceless = true; }}
NFS_KRB5 {{ Active_krb5 = false; }}
EXPORT {{ Export_Id = 1; Path = {export}; Pseudo = {export}; Access_Type = RW; Squash = No_Root_Squash; Protocols = 3; Transports = TCP; SecType = sys; FSAL {{ Name = VFS; }} }}
""")
        ganesha = shutil.which("ganesha.nfsd") or "/usr/bin/ganesha.nfsd"
        self.ganesha = subprocess.Popen([ganesha, "-F", "-f", conf, "-L", f"{self.base}/ganesha.log", "-p", f"{self.base}/ganesha.pid"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(self.ganesha)
        wait_port(self.nfs_port)

    def start_smb(self):
        d = self.base
        for sub in ["private", "lock", "state", "cache", "pid", "log"]:
            os.makedirs(f"{d}/{sub}", exist_ok=True)
        self.smb_port = free_port()
        conf = f"{d}/smb.conf"
        with open(conf, "w") as f:
            f.write(f"""[global]
  smb ports = {self.smb_port}
  interfaces = lo
  bind interfaces only = yes
  private dir = {d}/private
  lock directory = {d}/lock
  state directory = {d}/state
  cache directory = {d}/cache
  pid directory = {d}/pid
  log file = {d}/log/smbd.log
  passdb backend = tdbsam:{d}/private/passdb.tdb
  server min protocol = SMB2_02
  map to guest = never
  load printers = no
  printing = bsd
  printcap name = /dev/null
  disable spoolss = yes
  server role = standalone server
[bench]
  path = {d}/export
  read only = no
""")
        try:
            pwd.getpwnam(USER)
        except KeyError:
            subprocess.run(["useradd", "-M", "-s", "/usr/sbin/nologin", USER], check=True)
        subprocess.run(["smbpasswd", "-c", conf, "-s", "-a", USER], input=f"{PASSWORD}\n{PASSWORD}\n".encode(), check=True,
                       stdout=subprocess.DEVNULL)
        self.smbd = subprocess.Popen(["/usr/sbin/smbd", "-s", conf, "--foreground", "--no-process-group"], stdin=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(self.smbd)
        wait_port(self.smb_port)
        self.password_file = f"{d}/password"
        with open(self.password_file, "w") as f:
            f.write(PASSWORD + "\n")
        os.chmod(self.password_file, 0o600)
        self.auth_file = f"{d}/smbclient.auth"
        with open(self.auth_file, "w") as f:
            f.write(f"username = {USER}\npassword = {PASSWORD}\n")
        os.chmod(self.auth_file, 0o600)

    def proxy(self, port, rtt):
        """(port to use, proxy process or None) for `rtt` ms of added round trip."""
        if rtt == 0 and not self.force_proxy:
            return port, None
        p = subprocess.Popen([NETEM, "--listen", "0", "--to", f"127.0.0.1:{port}", "--delay-ms", str(rtt / 2)], stdout=subprocess.PIPE)
        line = p.stdout.readline().decode()
        self.procs.append(p)
        return int(line.split()[1]), p

    def stop(self):
        for p in reversed(self.procs):
            p.kill()
            p.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rtt", default="0,2,10")
    ap.add_argument("--cases", default="small,large")
    ap.add_argument("--protocols", default="nfs,smb")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--serial-files", type=int, default=2000)
    ap.add_argument("--fs", default="tmpfs", choices=["tmpfs", "disk"])
    ap.add_argument("--tools", default="ferry,ferry-serial,ferry-local,rclone,smbclient",
                    help="also ferry-noverify: --verify-mode none, the peers' work (no read-back)")
    ap.add_argument("--ferry-args", default="", help="extra arguments for every ferry run (e.g. --nfs-connections 8)")
    a = ap.parse_args()
    for tool in [FERRY, NETEM]:
        if not os.access(tool, os.X_OK):
            sys.exit(f"{tool} is missing: swift build -c release --static-swift-stdlib --product {os.path.basename(tool)}")
    for tool in ["ganesha.nfsd", "smbd", "rclone", "smbclient", "rpcinfo"]:
        if not (shutil.which(tool) or os.path.exists(f"/usr/sbin/{tool}")):
            sys.exit(f"filebench needs {tool}: apt-get install -y nfs-ganesha nfs-ganesha-vfs rpcbind samba smbclient rclone")
    base = tempfile.mkdtemp(prefix="ferry-filebench-", dir="/dev/shm" if a.fs == "tmpfs" else "/var/tmp")
    os.chmod(base, 0o755)  # smbd serves the export as the SMB user
    servers = Servers(base)
    protocols = a.protocols.split(",")
    if "nfs" in protocols:
        servers.start_nfs()
    if "smb" in protocols:
        servers.start_smb()
    obscured = subprocess.run(["rclone", "obscure", PASSWORD], capture_output=True, text=True).stdout.strip()
    data = {}
    for case in a.cases.split(","):
        data[case] = (f"{base}/src-{case}",) + (gen_small if case == "small" else gen_large)(f"{base}/src-{case}")
    if "small" in data:
        data["serial"] = (f"{base}/src-serial",) + gen_subset(data["small"][0], f"{base}/src-serial", a.serial_files)
    results = []
    extra_args = a.ferry_args.split()
    wanted = a.tools.split(",")
    export = f"{base}/export"
    counter = [0]

    def fresh(label):
        counter[0] += 1
        return f"{label}-{counter[0]}"

    def measure(protocol, case, rtt, tool, argv, dest, proxy, server_pid, server_children):
        src, files, size = data[case]
        before = (cpu(proxy.pid) if proxy else 0.0, cpu(server_pid, server_children))
        wall, client, status, tail = run(argv)
        after = (cpu(proxy.pid) if proxy else 0.0, cpu(server_pid, server_children))
        arrived = sum(len(names) for _, _, names in os.walk(dest))
        if status == 0 and arrived != files:
            status, tail = -1, f"{arrived} of {files} files arrived\n" + tail
        r = dict(protocol=protocol, case=case, rtt_ms=rtt, tool=tool, files=files, bytes=size, wall_s=round(wall, 3),
                 files_per_s=round(files / wall, 1), mb_per_s=round(size / wall / 1e6, 1), client_cpu_s=round(client, 2),
                 proxy_cpu_s=round(after[0] - before[0], 2), server_cpu_s=round(after[1] - before[1], 2), status=status)
        if status != 0:
            r["output"] = tail
        print(json.dumps(r), flush=True)
        results.append(r)
        shutil.rmtree(dest, ignore_errors=True)

    for rtt_text in a.rtt.split(","):
        # "0p": through the proxy with no delay (what the proxy itself costs).
        rtt = float(rtt_text.rstrip("p"))
        rtt = int(rtt) if rtt == int(rtt) else rtt
        servers.force_proxy = rtt_text.endswith("p")
        for run_index in range(a.runs):
            for case in a.cases.split(","):
                serial_case = "serial" if case == "small" and rtt > 0 else case
                if "nfs" in protocols:
                    port, proxy = servers.proxy(servers.nfs_port, rtt)
                    tools = [("ferry", case, []), ("ferry-serial", serial_case, ["--parallel", "1", "--nfs-connections", "1"]),
                             ("ferry-noverify", case, ["--verify-mode", "none"])]
                    if run_index % 2:
                        tools.reverse()
                    for tool, c, extra in tools:
                        if tool not in wanted:
                            continue
                        name = fresh(f"nfs-{tool}")
                        argv = [FERRY, "sync", data[c][0], f"nfs://127.0.0.1:{port}{export}/{name}", "--nfs-version", "3"] + extra_args + extra
                        measure("nfs", c, rtt, tool, argv, f"{export}/{name}", proxy, servers.ganesha.pid, False)
                    if rtt == 0 and "ferry-local" in wanted:
                        name = fresh("local")
                        measure("nfs", case, rtt, "ferry-local", [FERRY, "sync", data[case][0], f"{export}/{name}"], f"{export}/{name}",
                                None, servers.ganesha.pid, False)
                    if proxy:
                        proxy.kill()
                        proxy.wait()
                if "smb" in protocols:
                    port, proxy = servers.proxy(servers.smb_port, rtt)
                    tools = ["ferry", "rclone", "smbclient", "ferry-noverify"]
                    tools = tools[run_index % 4:] + tools[:run_index % 4]
                    for tool in [t for t in tools if t in wanted]:
                        c = serial_case if tool == "smbclient" else case
                        name = fresh(f"smb-{tool}")
                        if tool.startswith("ferry"):
                            argv = [FERRY, "sync", data[c][0], f"smb://{USER}@127.0.0.1:{port}/bench/{name}",
                                    "--password-file", servers.password_file] + extra_args
                            if tool == "ferry-noverify":
                                argv += ["--verify-mode", "none"]
                        elif tool == "rclone":
                            argv = ["rclone", "sync", data[c][0], f":smb:bench/{name}", "--smb-host", "127.0.0.1", "--smb-port", str(port),
                                    "--smb-user", USER, "--smb-pass", obscured]
                        else:
                            argv = ["smbclient", "//127.0.0.1/bench", "-p", str(port), "-A", servers.auth_file, "-c",
                                    f"prompt OFF; recurse ON; mkdir {name}; cd {name}; lcd {data[c][0]}; mput *"]
                        measure("smb", c, rtt, tool, argv, f"{export}/{name}", proxy, servers.smbd.pid, True)
                    if proxy:
                        proxy.kill()
                        proxy.wait()
    servers.stop()
    shutil.rmtree(base, ignore_errors=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    os.makedirs(f"{ROOT}/docs/results", exist_ok=True)
    with open(f"{ROOT}/docs/results/filebench-{stamp}.json", "w") as f:
        json.dump(dict(fs=a.fs, serial_files=a.serial_files, results=results), f, indent=1)
    print(f"\nfiles/s (ratio to ferry at the same RTT and protocol), fs={a.fs}")
    for r in results:
        ref = next((x for x in results if x["protocol"] == r["protocol"] and x["rtt_ms"] == r["rtt_ms"]
                    and x["tool"] == "ferry" and x["case"] in (r["case"], "small" if r["case"] == "serial" else r["case"])), None)
        ratio = ref["files_per_s"] / r["files_per_s"] if ref and r["files_per_s"] else 0
        print(f"{r['protocol']:4} {r['case']:6} {r['rtt_ms']:>4} ms {r['tool']:13} {r['wall_s']:8.2f} s {r['files_per_s']:9.1f} files/s "
              f"{r['mb_per_s']:8.1f} MB/s  ferry is {ratio:5.2f}x  cpu client {r['client_cpu_s']:.1f} proxy {r['proxy_cpu_s']:.1f} "
              f"server {r['server_cpu_s']:.1f}{'' if r['status'] == 0 else '  FAILED'}")


if __name__ == "__main__":
    main()
