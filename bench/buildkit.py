#!/usr/bin/env python3
"""The standard tool for bench/run's `rebuild` section: the engine's own BuildKit, driven the way a
developer's `docker build` would drive it, with nothing but Python's standard library.

    bench/buildkit.py build [--dockerfile F] [--target T] [--build-arg K=V]... [--label K=V]...
                            [--cache-from IMAGE]... [--inline-cache] --tag TAG CONTEXT
    bench/buildkit.py cache-ids                 the engine's build cache record IDs, one a line
    bench/buildkit.py prune-new BEFORE_FILE [--run CMD]... [--dry-run]
                                                remove the unused build cache records that are not in
                                                BEFORE_FILE (the output of an earlier `cache-ids`),
                                                unless one of them is a RUN of a command not listed

`build` POSTs CONTEXT to `/build?version=2` (the docker CLI on this machine has no buildx and its
classic `docker build` would not use BuildKit): the context filtered by `.dockerignore` the way the
docker CLI filters it (the Dockerfile and `.dockerignore` are always sent), Dockerfile first. It
prints one line, `steps=N cached=M image=sha256:...`, and exits 1 when the build failed.

`prune-new` is how the benchmark removes "the build cache" without `docker builder prune` of
everything: only the records that appeared after BEFORE_FILE was written, one `POST /build/prune`
per record ID. The engine does not say whose a record is, so a record someone else's build made in
that window would go too: with `--run`, any new record of a RUN step whose command is not one of
those listed (a build of something else) makes it remove nothing and say so (`foreign=N`). Another
build of the same Dockerfiles in the window is not detected: bench/run uses this only when asked
(OFFPACK_BENCH_PRUNE=1), on an engine nobody else builds on.
"""

import argparse
import base64
import http.client
import importlib.util
import io
import json
import os
import re
import socket
import sys
import tarfile
import urllib.parse

SOCKET = os.environ.get("DOCKER_SOCKET", "/var/run/docker.sock")
HERE = os.path.dirname(os.path.abspath(__file__))


def _probe():
    """scripts/engine-probe.py, for its BuildKit status decoder (one protobuf reader in the tree)."""
    path = os.path.join(HERE, "..", "scripts", "engine-probe.py")
    spec = importlib.util.spec_from_file_location("engine_probe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PROBE = _probe()


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=3600):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def request(method, path, body=None, headers=None):
    conn = UnixHTTPConnection(SOCKET)
    conn.request(method, path, body=body, headers=headers or {})
    return conn.getresponse()


# --- .dockerignore, moby's patternmatcher rules ----------------------------------------------

def _pattern_regex(pattern):
    out = ""
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            if pattern[i:i + 2] == "**":
                # `**` matches any number of directories, `**/` also none.
                i += 2
                if pattern[i:i + 1] == "/":
                    out += "(.*/)?"
                    i += 1
                else:
                    out += ".*"
                continue
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out += re.escape(c)
            else:
                out += pattern[i:end + 1].replace("[!", "[^", 1)
                i = end
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        else:
            out += re.escape(c)
        i += 1
    return re.compile("^" + out + "$")


def read_dockerignore(context):
    rules = []
    try:
        with open(os.path.join(context, ".dockerignore"), encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return rules
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        if exception:
            line = line[1:].strip()
        line = os.path.normpath(line).lstrip("/")
        if line in ("", "."):
            continue
        rules.append((_pattern_regex(line), exception))
    return rules


def excluded(rel, rules):
    """The last matching rule decides; a rule matches a path or any directory above it."""
    parts = rel.split("/")
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    result = False
    for regex, exception in rules:
        if any(regex.match(c) for c in candidates):
            result = not exception
    return result


def context_tar(context, dockerfile):
    """CONTEXT as a tar the docker CLI would send: filtered, Dockerfile first, owner 0:0."""
    rules = read_dockerignore(context)
    keep = {dockerfile, ".dockerignore"}
    names = []
    for root, dirs, files in os.walk(context):
        dirs.sort()
        for name in sorted(dirs + files):
            full = os.path.join(root, name)
            rel = os.path.relpath(full, context).replace(os.sep, "/")
            if rel in keep or not excluded(rel, rules):
                names.append(rel)
            elif name in dirs:
                # An excluded directory may still hold an exception (`!dir/keep`): walk on, the
                # files decide one by one.
                pass
    names.sort(key=lambda n: (n != dockerfile, n))

    def owner(info):
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for rel in names:
            tar.add(os.path.join(context, rel), arcname=rel, recursive=False, filter=owner)
    return buf.getvalue()


# --- commands ----------------------------------------------------------------------------------

def build(args):
    query = {"version": "2", "t": args.tag, "rm": "1", "forcerm": "1", "dockerfile": args.dockerfile}
    if args.target:
        query["target"] = args.target
    build_args = dict(kv.split("=", 1) for kv in args.build_arg)
    if args.inline_cache:
        build_args["BUILDKIT_INLINE_CACHE"] = "1"
    if build_args:
        query["buildargs"] = json.dumps(build_args)
    if args.label:
        query["labels"] = json.dumps(dict(kv.split("=", 1) for kv in args.label))
    if args.cache_from:
        query["cachefrom"] = json.dumps(args.cache_from)
    body = context_tar(args.context, args.dockerfile)
    resp = request("POST", "/build?" + urllib.parse.urlencode(query), body=body,
                   headers={"Content-Type": "application/x-tar"})
    ok = resp.status == 200
    steps = {}
    image = None
    errors = []
    for line in resp:
        line = line.strip()
        if not line:
            continue
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            continue
        if msg.get("id") == "moby.buildkit.trace":
            for number, value in PROBE.fields(base64.b64decode(msg["aux"])):
                if number != 1:
                    continue
                vertex = dict(PROBE.fields(value))
                name = vertex.get(3, b"").decode(errors="replace")
                # Dockerfile steps are named "[stage n/m] INSTRUCTION"; internal vertices (load
                # metadata, context transfer, exporting) are not steps, and neither is FROM: this
                # engine's BuildKit never marks a local base image as cached, so counting it would
                # make a fully cached build look like one that ran a step.
                if not name.startswith("[") or name.startswith("[internal]") or "] FROM " in name:
                    continue
                digest = vertex.get(1, b"").decode()
                seen = steps.setdefault(digest, {"name": name, "cached": False, "done": False})
                seen["cached"] |= bool(vertex.get(4))
                seen["done"] |= 6 in vertex
                if vertex.get(7):
                    errors.append(f"{name}: {vertex[7].decode(errors='replace')}")
        elif msg.get("id") == "moby.image.id":
            image = msg.get("aux", {}).get("ID")
        elif "error" in msg:
            ok = False
            errors.append(msg["error"])
        elif "message" in msg:
            ok = False
            errors.append(msg["message"])
    if resp.status != 200:
        errors.append(f"HTTP {resp.status}")
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    cached = sum(1 for s in steps.values() if s["cached"])
    for s in steps.values():
        print(f"{'CACHED' if s['cached'] else 'RUN   '} {s['name']}", file=sys.stderr)
    print(f"steps={len(steps)} cached={cached} image={image}")
    return 0 if ok and image else 1


def cache_records():
    resp = request("GET", "/system/df")
    if resp.status != 200:
        sys.exit(f"GET /system/df: HTTP {resp.status}")
    return json.load(resp).get("BuildCache") or []


def cache_ids(_args):
    for record in cache_records():
        print(record["ID"])
    return 0


def prune_new(args):
    with open(args.before, encoding="utf-8") as f:
        before = {line.strip() for line in f if line.strip()}
    removed = reclaimed = 0
    if args.runs:
        allowed = {f"mount / from exec /bin/sh -c {cmd}" for cmd in args.runs}
        foreign = [r for r in cache_records()
                   if r["ID"] not in before and r.get("Description", "").startswith("mount / from exec ")
                   and r.get("Description") not in allowed]
        if foreign:
            for r in foreign:
                print(f"not ours: {r['ID']} {r.get('Description', '')}", file=sys.stderr)
            print(f"pruned=0 foreign={len(foreign)}")
            return 0
    if args.dry_run:
        new = [r for r in cache_records() if r["ID"] not in before and not r.get("InUse")]
        for r in new:
            print(f"would prune {r['ID']} {r.get('Description', '')}", file=sys.stderr)
        print(f"pruned=0 would={len(new)}")
        return 0
    # A record other records are built on stays while they exist: passes until one removes
    # nothing, so children go first and their parents in a later pass.
    while True:
        new = [r for r in cache_records() if r["ID"] not in before and not r.get("InUse")]
        removed_in_pass = 0
        for record in new:
            filters = json.dumps({"id": [record["ID"]]})
            resp = request("POST", "/build/prune?" + urllib.parse.urlencode({"all": "1", "filters": filters}))
            if resp.status != 200:
                print(f"prune {record['ID']}: HTTP {resp.status} {resp.read()[:200]!r}", file=sys.stderr)
                return 1
            answer = json.load(resp)
            deleted = answer.get("CachesDeleted") or []
            # The engine matches `id` as a pattern: anything but the one record asked for means
            # the filter is wider than this script assumes, and it stops.
            if any(d != record["ID"] for d in deleted):
                print(f"prune {record['ID']} removed {deleted}: stopping", file=sys.stderr)
                return 1
            if deleted:
                removed_in_pass += 1
                reclaimed += answer.get("SpaceReclaimed") or 0
                print(f"pruned {record['ID']} {record.get('Description', '')}", file=sys.stderr)
        removed += removed_in_pass
        if removed_in_pass == 0:
            print(f"pruned={removed} kept={len(new)} bytes={reclaimed}")
            return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build")
    b.add_argument("--dockerfile", default="Dockerfile")
    b.add_argument("--target")
    b.add_argument("--build-arg", action="append", default=[])
    b.add_argument("--label", action="append", default=[])
    b.add_argument("--cache-from", action="append", default=[])
    b.add_argument("--inline-cache", action="store_true")
    b.add_argument("--tag", required=True)
    b.add_argument("context")
    b.set_defaults(func=build)
    c = sub.add_parser("cache-ids")
    c.set_defaults(func=cache_ids)
    p = sub.add_parser("prune-new")
    p.add_argument("before")
    p.add_argument("--dry-run", action="store_true", help="only list the records it would remove")
    p.add_argument("--run", dest="runs", action="append", default=[],
                   help="a RUN command the window's builds may have (repeatable); any other: prune nothing")
    p.set_defaults(func=prune_new)
    args = parser.parse_args()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
