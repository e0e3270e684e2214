#!/usr/bin/env python3
"""`ferry server` measured: API latency under load, and an execution's overhead.

    python3 bench/serverbench.py [--clients 50] [--seconds 20] [--runs 3] [--case small]

1. DescribeTaskExecution from N concurrent clients (one process each, each with its own
   keep-alive connection, every request SigV4-signed by botocore's signer) for S seconds:
   requests per second and p50/p99 latency seen by the clients, and the server's CPU time.
2. One task execution (NFS → NFS, the `small` data set of bench.py on tmpfs) timed from
   StartTaskExecution until DescribeTaskExecution says SUCCESS (polled every --poll s),
   against `ferry sync SRC DST` on the same data in the same run, alternating, each into a
   fresh destination on tmpfs. The difference is the control plane's overhead.

Uses the release build (.build/release/ferry); do not run it during a build.
"""
import argparse, http.client, json, multiprocessing, os, shutil, socket, statistics, subprocess, sys, tempfile, time

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import bench  # noqa: E402  (data generators)
from bench import free_port, wait_port  # noqa: E402
from agentbench import run_task  # noqa: E402


def start_server(ferry, data):
    port = free_port()
    p = subprocess.Popen(["setpriv", "--pdeathsig", "KILL", "--", ferry, "server", "--data-dir", data, "--port", str(port)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, p, "ferry server")
    creds = dict(l.split("=", 1) for l in subprocess.check_output([ferry, "server", "credentials", "--data-dir", data], text=True).split())
    return p, port, creds["AWS_ACCESS_KEY_ID"], creds["AWS_SECRET_ACCESS_KEY"]


def client_loop(args):
    port, key, secret, execution, seconds = args
    creds = Credentials(key, secret)
    body = json.dumps({"TaskExecutionArn": execution}).encode()
    conn = http.client.HTTPConnection("127.0.0.1", port)
    latencies, errors = [], 0
    began = time.time()
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        req = AWSRequest(method="POST", url=f"http://127.0.0.1:{port}/", data=body,
                         headers={"X-Amz-Target": "FmrsService.DescribeTaskExecution", "Content-Type": "application/x-amz-json-1.1"})
        SigV4Auth(creds, "datasync", "us-east-1").add_auth(req)
        start = time.perf_counter()
        conn.request("POST", "/", body=body, headers=dict(req.headers.items()))
        resp = conn.getresponse()
        resp.read()
        latencies.append(time.perf_counter() - start)
        if resp.status != 200:
            errors += 1
    return latencies, errors, began, time.time()


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--case", default="small")
    ap.add_argument("--poll", type=float, default=0.02, help="DescribeTaskExecution polling interval while an execution runs")
    ap.add_argument("--ferry", default=os.path.join(ROOT, ".build/release/ferry"))
    a = ap.parse_args()
    src = f"/dev/shm/ferry-bench/data-{a.case}"
    if not os.path.isdir(src):
        bench.CASES[a.case](src)
    work = tempfile.mkdtemp(prefix="ferry-serverbench-", dir="/dev/shm")
    server, port, key, secret = start_server(a.ferry, f"{work}/state")
    ds = boto3.client("datasync", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                      aws_access_key_id=key, aws_secret_access_key=secret)
    agent = ds.list_agents()["Agents"][0]["AgentArn"]
    src_loc = ds.create_location_nfs(ServerHostname="localhost", Subdirectory=src, OnPremConfig={"AgentArns": [agent]})["LocationArn"]

    results = {"case": a.case, "clients": a.clients, "seconds": a.seconds}
    samples = {"execution": [], "ferry sync": []}
    totals = []
    for r in range(a.runs):
        order = ["execution", "ferry sync"] if r % 2 == 0 else ["ferry sync", "execution"]
        for what in order:
            dst = f"{work}/dst-{what.replace(' ', '')}-{r}"
            if what == "ferry sync":
                start = time.perf_counter()
                subprocess.run([a.ferry, "sync", src, dst, "-q"], check=True)
                samples[what].append(time.perf_counter() - start)
            else:
                dst_loc = ds.create_location_nfs(ServerHostname="localhost", Subdirectory=dst,
                                                 OnPremConfig={"AgentArns": [agent]})["LocationArn"]
                task = ds.create_task(SourceLocationArn=src_loc, DestinationLocationArn=dst_loc)["TaskArn"]
                d = {}
                samples[what].append(run_task(ds, task, poll=a.poll, described=d))
                totals.append(d["Result"]["TotalDuration"] / 1000)
                last_execution = d["TaskExecutionArn"]
            print(f"{what} run {r}: {samples[what][-1]:.3f}s", flush=True)
    for what, s in samples.items():
        results[f"{what} median s"] = round(statistics.median(s), 3)
    results["execution TotalDuration median s"] = round(statistics.median(totals), 3)
    results["overhead s"] = round(results["execution median s"] - results["ferry sync median s"], 3)

    cpu_before = cpu_seconds(server.pid)
    with multiprocessing.Pool(a.clients) as pool:
        out = pool.map(client_loop, [(port, key, secret, last_execution, a.seconds)] * a.clients)
    cpu = cpu_seconds(server.pid) - cpu_before
    latencies = sorted(x for l, _, _, _ in out for x in l)
    errors = sum(e for _, e, _, _ in out)
    wall = max(o[3] for o in out) - min(o[2] for o in out)
    results.update({
        "DescribeTaskExecution requests": len(latencies), "errors": errors,
        "requests per second": round(len(latencies) / wall, 1),
        "p50 ms": round(latencies[len(latencies) // 2] * 1000, 2),
        "p99 ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2),
        "server CPU s": round(cpu, 1),
    })
    server.kill()
    shutil.rmtree(work, ignore_errors=True)
    out_path = os.path.join(ROOT, "bench/out", time.strftime("server-results-%Y%m%d-%H%M%S.json"))
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    json.dump(results, open(out_path, "w"), indent=1)
    print(json.dumps(results, indent=1))
    print("results:", out_path)


if __name__ == "__main__":
    main()
