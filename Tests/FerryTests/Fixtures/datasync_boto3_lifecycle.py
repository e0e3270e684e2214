#!/usr/bin/env python3
"""Drives `ferry server` with boto3: NFS (a local path) → object storage (an S3 server),
with a STANDARD task report uploaded to the same bucket, polled to the end.

datasync_boto3_lifecycle.py FERRY_ENDPOINT SOURCE_PATH S3_HOST S3_PORT BUCKET S3_KEY S3_SECRET
Ferry's credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY. Prints one JSON
object: the described execution, the statuses seen while polling, the described
destination location and task.
"""
import json, sys, time
import boto3

endpoint, source, s3_host, s3_port, bucket, s3_key, s3_secret = sys.argv[1:8]
ds = boto3.client("datasync", endpoint_url=endpoint, region_name="ap-southeast-2")
agent = ds.list_agents()["Agents"][0]["AgentArn"]
src = ds.create_location_nfs(ServerHostname="localhost", Subdirectory=source,
                             OnPremConfig={"AgentArns": [agent]})["LocationArn"]
dst = ds.create_location_object_storage(ServerHostname=s3_host, ServerPort=int(s3_port), ServerProtocol="HTTP",
                                        BucketName=bucket, Subdirectory="/backup", AccessKey=s3_key, SecretKey=s3_secret,
                                        AgentArns=[agent], Tags=[{"Key": "kind", "Value": "object"}])["LocationArn"]
task = ds.create_task(
    SourceLocationArn=src, DestinationLocationArn=dst, Name="to-object-storage",
    Options={"LogLevel": "TRANSFER", "VerifyMode": "ONLY_FILES_TRANSFERRED", "PreserveDevices": "NONE"},
    TaskReportConfig={"Destination": {"S3": {"S3BucketArn": f"arn:aws:s3:::{bucket}", "Subdirectory": "reports",
                                             "BucketAccessRoleArn": "arn:aws:iam::000000000000:role/report"}},
                      "OutputType": "STANDARD", "ReportLevel": "SUCCESSES_AND_ERRORS"})["TaskArn"]
execution = ds.start_task_execution(TaskArn=task)["TaskExecutionArn"]
statuses = []
deadline = time.time() + 120
while True:
    d = ds.describe_task_execution(TaskExecutionArn=execution)
    if not statuses or statuses[-1] != d["Status"]:
        statuses.append(d["Status"])
    if d["Status"] in ("SUCCESS", "ERROR") or time.time() > deadline:
        break
    time.sleep(0.2)
d.pop("ResponseMetadata", None)
location = ds.describe_location_object_storage(LocationArn=dst)
location.pop("ResponseMetadata", None)
described_task = ds.describe_task(TaskArn=task)
described_task.pop("ResponseMetadata", None)
print(json.dumps({"execution": d, "statuses": statuses, "location": location, "task": described_task}, default=str))
