#!/usr/bin/env python3
"""Sends one raw, SigV4-signed DataSync request (what the aws CLI refuses to send).

datasync_raw.py ENDPOINT TARGET BODY
TARGET is the X-Amz-Target value (e.g. FmrsService.ListTasks), BODY the raw request body.
Credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY. Prints the HTTP status on the
first line and the response body after it.
"""
import os, sys, urllib.request, urllib.error
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

endpoint, target, body = sys.argv[1], sys.argv[2], sys.argv[3].encode()
req = AWSRequest(method="POST", url=endpoint + "/", data=body,
                 headers={"X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.1"})
SigV4Auth(Credentials(os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]), "datasync", "us-east-1").add_auth(req)
r = urllib.request.Request(endpoint + "/", data=body, headers=dict(req.headers.items()), method="POST")
try:
    with urllib.request.urlopen(r) as resp:
        print(resp.status)
        print(resp.read().decode())
except urllib.error.HTTPError as e:
    print(e.code)
    print(e.read().decode())
