#!/usr/bin/env python3
"""Probe what the Docker Engine's build API does, with nothing but Python's standard library.

    scripts/engine-probe.py build DIR TAG [key=value ...]

POSTs DIR as a tar body to /build (the way offpack builds) and prints the step log. BuildKit's
(version=2) progress arrives as base64 protobuf (moby.buildkit.v1.StatusResponse); it is decoded
here, so a cached step shows as "#vertex <step> CACHED". Query parameters pass through as given:
    version=1|2   cachefrom='["img:tag"]'   buildargs='{"BUILDKIT_INLINE_CACHE":"1"}'   target=build
The context tar is written in GNU format with the Dockerfile first: BuildKit on Engine 20.10 takes a
body whose first tar header is not plain (a PAX or GNU long-name header) for a bare Dockerfile.
Used for docs/engine-support.md.
"""

import base64
import http.client
import io
import json
import os
import socket
import sys
import tarfile
import urllib.parse

SOCKET = os.environ.get("DOCKER_SOCKET", "/var/run/docker.sock")


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=600):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def context_tar(directory):
    """The directory's files as an in-memory tar, Dockerfile first, GNU headers (no PAX)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name in sorted(os.listdir(directory), key=lambda n: (n != "Dockerfile", n)):
            tar.add(os.path.join(directory, name), arcname=name)
    return buf.getvalue()


# --- a raw protobuf reader, enough for moby.buildkit.v1.StatusResponse -----------------------

def varint(data, pos):
    result = shift = 0
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def fields(data):
    pos = 0
    while pos < len(data):
        key, pos = varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = varint(data, pos)
        elif wire == 2:
            length, pos = varint(data, pos)
            value = data[pos:pos + length]
            pos += length
        elif wire == 1:
            value = data[pos:pos + 8]
            pos += 8
        elif wire == 5:
            value = data[pos:pos + 4]
            pos += 4
        else:
            raise ValueError(f"wire type {wire}")
        yield number, value


def decode_status(raw):
    """Yields printable lines from one StatusResponse."""
    for number, value in fields(raw):
        if number == 1:  # Vertex
            v = {}
            for n, x in fields(value):
                v[n] = x
            name = v.get(3, b"").decode(errors="replace")
            state = []
            if v.get(4):
                state.append("CACHED")
            if 6 in v:
                state.append("done")
            if v.get(7):
                state.append("ERROR " + v[7].decode(errors="replace"))
            if state or 5 not in v:
                yield f"#vertex {name} {' '.join(state)}".rstrip()
        elif number == 3:  # VertexLog
            msg = b""
            for n, x in fields(value):
                if n == 4:
                    msg = x
            for line in msg.decode(errors="replace").splitlines():
                yield f"#log {line}"


def build(directory, tag, params):
    query = {"t": tag, "rm": "1", "forcerm": "1"}
    query.update(params)
    conn = UnixHTTPConnection(SOCKET)
    conn.request("POST", "/build?" + urllib.parse.urlencode(query), body=context_tar(directory),
                 headers={"Content-Type": "application/x-tar"})
    resp = conn.getresponse()
    print(f"HTTP {resp.status}")
    seen = set()
    ok = resp.status == 200
    for line in resp:
        line = line.strip()
        if not line:
            continue
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            print("raw:", line.decode(errors="replace"))
            continue
        if msg.get("id") == "moby.buildkit.trace":
            for text in decode_status(base64.b64decode(msg["aux"])):
                if text not in seen:
                    seen.add(text)
                    print(text)
        elif "stream" in msg:
            sys.stdout.write(msg["stream"])
        elif "error" in msg:
            ok = False
            print("ERROR:", msg["error"])
        elif "aux" in msg:
            print("aux:", json.dumps(msg["aux"]))
        elif "message" in msg:
            ok = False
            print("message:", msg["message"])
        else:
            print(json.dumps(msg))
    return ok


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "build":
        extra = dict(arg.split("=", 1) for arg in sys.argv[4:])
        sys.exit(0 if build(sys.argv[2], sys.argv[3], extra) else 1)
    print(__doc__)
    sys.exit(2)
