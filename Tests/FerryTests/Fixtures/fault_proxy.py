#!/usr/bin/env python3
"""A fault-injecting HTTP proxy for Ferry's S3 retry tests.

fault_proxy.py LISTEN_PORT UPSTREAM_PORT EVERY [CERT KEY]
Forwards every request to 127.0.0.1:UPSTREAM_PORT, except that every EVERY-th request
(never, with EVERY 0) is answered with an S3 error instead: 503 SlowDown, 500
InternalError, or a connection closed without an answer, in turn. Prints one line per
injected fault to stdout. With CERT and KEY (PEM) it serves https.
With CORRUPT_GETS=N in the environment, the bodies of the first N successful GET answers
(GetObject: no query) have one byte flipped (data corrupted in transit, which signatures do not cover).
With CORRUPT_PUTS=N, the first N PUT bodies are corrupted the same way on their way up;
with ETAG_LIES=N, the first N PutObject answers for non-empty bodies carry a wrong ETag
(a server that stored other bytes than it was sent). With LOG_REQUESTS=1 every request
is printed as "request METHOD PATH" (with its Range and If-Match headers when it has them).
With TRUNCATE_GETS=N, the first successful GetObject answers for N objects send their headers and
half of the body, then the connection is closed (a download broken off mid-body); with
REPLACE_TRUNCATED=1 the object is then overwritten upstream with other bytes, so that
resuming the download finds another object.
"""
import http.client, http.server, os, socketserver, ssl, sys, threading

listen, upstream, every = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
count = 0
corrupt_left = int(os.environ.get("CORRUPT_GETS", "0"))
corrupt_puts = int(os.environ.get("CORRUPT_PUTS", "0"))
etag_lies = int(os.environ.get("ETAG_LIES", "0"))
log_requests = os.environ.get("LOG_REQUESTS") == "1"
truncate_left = int(os.environ.get("TRUNCATE_GETS", "0"))
truncated_paths = set()
replace_truncated = os.environ.get("REPLACE_TRUNCATED") == "1"
lock = threading.Lock()
FAULTS = [(503, "SlowDown", "Please reduce your request rate."),
          (500, "InternalError", "We encountered an internal error. Please try again."),
          (None, None, None)]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def handle_any(self):
        global count
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
        else:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
        global corrupt_puts, etag_lies
        with lock:
            count += 1
            n = count
            flip_put = self.command == "PUT" and len(body) > 0 and corrupt_puts > 0
            corrupt_puts -= flip_put
            lie = self.command == "PUT" and "?" not in self.path and len(body) > 0 and not flip_put and etag_lies > 0
            etag_lies -= lie
        if log_requests:
            extra = "".join(f" {h}: {self.headers[h]}" for h in ("Range", "If-Match") if self.headers.get(h))
            print(f"request {self.command} {self.path}{extra}", flush=True)
        if flip_put:
            body = bytearray(body)
            body[len(body) // 2] ^= 0x01
            body = bytes(body)
            print(f"corrupted {n} PUT {self.path}", flush=True)
        if every and n % every == 0:
            status, code, message = FAULTS[(n // every) % len(FAULTS)]
            print(f"fault {n} {self.command} {self.path} {code or 'reset'}", flush=True)
            if status is None:
                self.close_connection = True
                self.connection.shutdown(2)
                return
            xml = f"<?xml version=\"1.0\"?><Error><Code>{code}</Code><Message>{message}</Message><RequestId>fault-{n}</RequestId></Error>".encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(xml)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(xml)
            return
        conn = http.client.HTTPConnection("127.0.0.1", upstream, timeout=120)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "transfer-encoding"}
        if body or self.command in ("PUT", "POST"):
            headers["Content-Length"] = str(len(body))
        conn.request(self.command, self.path, body=body if body or self.command in ("PUT", "POST") else None, headers=headers)
        r = conn.getresponse()
        data = r.read()
        global corrupt_left
        if self.command == "GET" and "?" not in self.path and r.status in (200, 206) and data:
            with lock:
                flip = corrupt_left > 0
                corrupt_left -= flip
            if flip:
                data = bytearray(data)
                data[len(data) // 2] ^= 0x01
                data = bytes(data)
                print(f"corrupted {n} GET {self.path}", flush=True)
        global truncate_left
        truncate = False
        if self.command == "GET" and "?" not in self.path and r.status in (200, 206) and len(data) > 1:
            with lock:  # the first answer for each of N objects
                truncate = truncate_left > 0 and self.path not in truncated_paths
                truncate_left -= truncate
                truncated_paths.add(self.path)
        self.send_response(r.status)
        for k, v in r.getheaders():
            if lie and k.lower() == "etag":
                v = '"' + ("0" if v.strip('"')[0] != "0" else "1") + v.strip('"')[1:] + '"'
                print(f"lied {n} PUT {self.path} ETag {v}", flush=True)
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        # A HEAD answer has no body but keeps the object's Content-Length.
        self.send_header("Content-Length", r.getheader("Content-Length", "0") if self.command == "HEAD" else str(len(data)))
        self.end_headers()
        if truncate:
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            conn.close()
            if replace_truncated:  # before the connection closes, so the resumed GET finds the new object
                import boto3, urllib.parse  # signed with the credentials in the environment
                bucket, key = urllib.parse.unquote(self.path).lstrip("/").split("/", 1)
                answer = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{upstream}").put_object(
                    Bucket=bucket, Key=key, Body=b"replaced while it was read")
                print(f"replaced {self.path}: HTTP {answer['ResponseMetadata']['HTTPStatusCode']}", flush=True)
            self.close_connection = True
            self.connection.shutdown(2)
            print(f"truncated {n} GET {self.path} after {len(data) // 2} of {len(data)} bytes", flush=True)
            return
        if self.command != "HEAD":
            self.wfile.write(data)
        conn.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


server = Server(("127.0.0.1", listen), Handler)
if len(sys.argv) > 5:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(sys.argv[4], sys.argv[5])
    server.socket = context.wrap_socket(server.socket, server_side=True)
print("ready", flush=True)
server.serve_forever()
