#!/usr/bin/env python3
"""Agents measured: what running an execution on a `ferry agent` costs, and what a control
plane with many agents spends.

    python3 bench/agentbench.py [--runs 3] [--agents 20] [--seconds 60]

1. The same copy (20,000 files of 1-16 KiB, NFS export → NFS export, nfs-ganesha on tmpfs)
   as a task whose locations name the built-in agent (the engine runs in the server) and as
   one whose locations name a `ferry agent` on the same machine (the engine runs there, the
   control plane sees progress over mutual TLS): StartTaskExecution until
   DescribeTaskExecution says SUCCESS, alternated, each into a fresh destination. Ratio
   agent / built-in.
2. --agents agents activated (activation port, create_agent) and heartbeating (every 30 s,
   the default), then one execution per agent, each slowed by BytesPerSecond so that all run
   for the whole window, reporting progress every 2 s: the control plane's CPU seconds and
   memory (VmRSS, VmHWM) over --seconds, idle and busy.

Uses the release build (.build/release/ferry); do not run it during a build.
"""
import argparse, json, os, re, shutil, statistics, subprocess, sys, tempfile, time, urllib.request

import boto3

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import filebench  # noqa: E402  (nfs-ganesha, data generators)
from filebench import free_port, wait_port  # noqa: E402


def proc_status(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            fields[k] = v.strip()
    return fields


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kw):
        return None


def activation_key(port, deadline=30, address="127.0.0.1"):
    opener = urllib.request.build_opener(NoRedirect)
    end = time.time() + deadline
    while time.time() < end:
        try:
            opener.open(f"http://{address}:{port}/?gatewayType=SYNC&activationRegion=us-east-1")
        except urllib.error.HTTPError as e:
            if e.code == 302:
                return re.search(r"activationKey=([A-Z0-9-]{29})", e.headers["Location"]).group(1)
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit(f"no activation key on port {port}")



def start_control_plane(ferry, work, procs, extra=()):
    """`ferry server --tls` in WORK/cp on a free port: (port, its CA's path, a boto3 DataSync client, the process)."""
    port = free_port()
    data = f"{work}/cp"
    cp = subprocess.Popen(["setpriv", "--pdeathsig", "KILL", "--", ferry, "server", "--data-dir", data, "--port", str(port), "--tls"] + list(extra),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(cp)
    wait_port(port)
    creds = dict(l.split("=", 1) for l in subprocess.check_output([ferry, "server", "credentials", "--data-dir", data], text=True).split())
    ca = f"{data}/tls/ca.pem"
    ds = boto3.client("datasync", endpoint_url=f"https://127.0.0.1:{port}", region_name="us-east-1", verify=ca,
                      aws_access_key_id=creds["AWS_ACCESS_KEY_ID"], aws_secret_access_key=creds["AWS_SECRET_ACCESS_KEY"])
    return port, ca, ds, cp


def start_agent_process(ferry, ds, port, ca, data_dir, name, procs, heartbeat=30, extra=(), netns=None, cp_address="127.0.0.1",
                        address="127.0.0.1"):
    """A `ferry agent` activated through its activation port and create_agent, waited for until ONLINE: (ARN, process).
    With `netns`, it runs in that network namespace, reaches the control plane at `cp_address` and is reached at `address`."""
    activation = free_port()
    wrapper = ["ip", "netns", "exec", netns] if netns else []
    p = subprocess.Popen(wrapper + ["setpriv", "--pdeathsig", "KILL", "--", ferry, "agent", "--data-dir", data_dir,
                                    "--control-plane", f"https://{cp_address}:{port}", "--ca-file", ca, "--activation-port", str(activation),
                                    "--activation-host", address, "--heartbeat-seconds", str(heartbeat)] + list(extra),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(p)
    arn = ds.create_agent(ActivationKey=activation_key(activation, address=address), AgentName=name)["AgentArn"]
    for _ in range(100):
        if ds.describe_agent(AgentArn=arn)["Status"] == "ONLINE":
            return arn, p
        time.sleep(0.1)
    sys.exit(f"agent {name} never came ONLINE")


def clean_up(procs, servers, work):
    """Kills the processes a bench started, stops its file servers, removes its tree."""
    for p in procs:
        p.kill()
    servers.stop()
    shutil.rmtree(work, ignore_errors=True)


def save_results(results, name):
    """Writes `results` to docs/results/NAME-DATE.json and prints them."""
    out_path = os.path.join(ROOT, "docs/results", time.strftime(f"{name}-results-%Y%m%d-%H%M%S.json"))
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    json.dump(results, open(out_path, "w"), indent=1)
    print(json.dumps(results, indent=1))
    print("results:", out_path)


def run_task(ds, task, poll=0.05, described=None):
    """Seconds from StartTaskExecution until DescribeTaskExecution says SUCCESS (exits on ERROR);
    the last description goes into the dict `described` when one is given."""
    start = time.perf_counter()
    execution = ds.start_task_execution(TaskArn=task)["TaskExecutionArn"]
    while True:
        d = ds.describe_task_execution(TaskExecutionArn=execution)
        if d["Status"] in ("SUCCESS", "ERROR"):
            break
        time.sleep(poll)
    if described is not None:
        described.update(d)
    if d["Status"] != "SUCCESS":
        sys.exit(f"execution failed: {d['Result']}")
    return time.perf_counter() - start

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--agents", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--ferry", default=os.path.join(ROOT, ".build/release/ferry"))
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="ferry-agentbench-", dir="/dev/shm")
    servers = filebench.Servers(work)
    servers.start_nfs()
    export = f"{work}/export"
    filebench.gen_small(f"{export}/src")
    procs = []
    try:
        port, ca, ds, cp = start_control_plane(a.ferry, work, procs)

        def start_agent(i, heartbeat=30):
            return start_agent_process(a.ferry, ds, port, ca, f"{work}/agent{i}", f"bench{i}", procs, heartbeat)

        def nfs(path, agent):
            return ds.create_location_nfs(ServerHostname="127.0.0.1", Subdirectory=path, OnPremConfig={"AgentArns": [agent]})["LocationArn"]

        def run(task):
            return run_task(ds, task)

        builtin = ds.list_agents()["Agents"][0]["AgentArn"]
        agent, agent_proc = start_agent(0)
        results = {"files": 20000, "runs": a.runs}
        samples = {"built-in": [], "agent": []}
        cpu = {"built-in": [], "agent": []}
        for r in range(a.runs):
            for where in (["built-in", "agent"] if r % 2 == 0 else ["agent", "built-in"]):
                arn = builtin if where == "built-in" else agent
                dst = f"{export}/dst-{where}-{r}"
                task = ds.create_task(SourceLocationArn=nfs(f"{export}/src", arn), DestinationLocationArn=nfs(dst, arn),
                                      Options={"VerifyMode": "ONLY_FILES_TRANSFERRED"})["TaskArn"]
                before = cpu_seconds(cp.pid) + cpu_seconds(agent_proc.pid)
                samples[where].append(run(task))
                cpu[where].append(cpu_seconds(cp.pid) + cpu_seconds(agent_proc.pid) - before)
                print(f"{where} run {r}: {samples[where][-1]:.2f} s", flush=True)
        for where in samples:
            results[f"{where} median s"] = round(statistics.median(samples[where]), 3)
            results[f"{where} files/s"] = round(20000 / statistics.median(samples[where]))
            results[f"{where} CPU s (server + agent) median"] = round(statistics.median(cpu[where]), 2)
        results["agent / built-in"] = round(results["agent median s"] / results["built-in median s"], 3)

        # Many agents: idle, then each running a slowed execution.
        agents = [(agent, agent_proc)] + [start_agent(i) for i in range(1, a.agents)]
        time.sleep(5)
        status = proc_status(cp.pid)
        before = cpu_seconds(cp.pid)
        time.sleep(a.seconds)
        results[f"{a.agents} agents idle: server CPU s per minute"] = round((cpu_seconds(cp.pid) - before) * 60 / a.seconds, 2)
        results[f"{a.agents} agents idle: server VmRSS"] = proc_status(cp.pid)["VmRSS"]
        os.makedirs(f"{export}/slow", exist_ok=True)
        for i in range(200):
            with open(f"{export}/slow/f{i}", "wb") as f:
                f.write(os.urandom(16384))
        executions = []
        for i, (arn, _) in enumerate(agents):
            task = ds.create_task(SourceLocationArn=nfs(f"{export}/slow", arn), DestinationLocationArn=nfs(f"{export}/slow-dst-{i}", arn),
                                  Options={"BytesPerSecond": int(200 * 16384 / (a.seconds + 30)), "VerifyMode": "NONE"})["TaskArn"]
            executions.append(ds.start_task_execution(TaskArn=task)["TaskExecutionArn"])
        time.sleep(5)
        before = cpu_seconds(cp.pid)
        time.sleep(a.seconds)
        running = sum(ds.describe_task_execution(TaskExecutionArn=e)["Status"] not in ("SUCCESS", "ERROR") for e in executions)
        results[f"{a.agents} executions reporting: server CPU s per minute"] = round((cpu_seconds(cp.pid) - before) * 60 / a.seconds, 2)
        results[f"{a.agents} executions reporting: still running at the end"] = running
        status = proc_status(cp.pid)
        results["server VmRSS"] = status["VmRSS"]
        results["server VmHWM"] = status["VmHWM"]
        results["one agent VmHWM"] = proc_status(agents[1][1].pid)["VmHWM"]
    finally:
        clean_up(procs, servers, work)
    save_results(results, "agent")


if __name__ == "__main__":
    main()
