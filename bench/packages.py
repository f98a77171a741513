#!/usr/bin/env python3
"""bench/packages.py — the helpers of `bench/run packages` (issue 19).

    packages.py npm-tree DIR COUNT         write COUNT small synthetic npm package directories under
                                           DIR/src (a dependency DAG, a quarter scoped) and the app
                                           that depends on its roots under DIR/app
    packages.py npm-registry DIR PACKED    from `npm pack --json` output PACKED (tarballs in
                                           DIR/tarballs): the packuments under DIR/packuments
    packages.py registry DIR PORTFILE      serve DIR as a plain npm registry on 127.0.0.1 (port
                                           written to PORTFILE) until killed
    packages.py npm-request LOCK OUT       the request file of `offpack bundle --packages-for`
                                           naming every tarball of LOCK (a package-lock.json)
    packages.py pip-request REQS OUT       the request file naming REQS (a pinned requirements
                                           file) for python:3.11-slim
    packages.py pin DOWNLOADS OUT          a pinned requirements file from a `pip download` folder
    packages.py find-links STORE ECO DIR   hard-link the STORE's ECO files into DIR by filename
    packages.py rewrite-lock IN OUT OLD NEW  a copy of a lock with the `resolved` base OLD as NEW

The baseline registry is Python's ThreadingHTTPServer with HTTP/1.1 keep-alive and a 40-line
handler: packuments are pre-generated JSON files (the registry's base URL put in when served),
tarballs are files sent with `shutil.copyfileobj`. It lays out its URLs as offpack's registry does
(`/<name>/-/<unscoped>-<version>.tgz`, scoped packuments as `/@scope%2fname`), so a lock made
against one points at the other by changing host and port only.
"""

import hashlib
import json
import os
import random
import re
import shutil
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PLACEHOLDER = "@@REGISTRY@@"
SCOPE = "@offpack-bench"


def npm_tree(root, count):
    """A deterministic DAG: package i depends on 0-3 packages of higher index, each package but
    the first ROOTS has a parent, so that the app (depending on the roots) installs all COUNT."""
    rng = random.Random(19)
    roots = max(1, count // 10)
    names = []
    for i in range(count):
        names.append(f"{SCOPE}/mod-{i:03d}" if i % 4 == 3 else f"offpack-bench-pkg-{i:03d}")
    deps = {i: set() for i in range(count)}
    for j in range(roots, count):
        deps[rng.randrange(0, j)].add(j)
    for i in range(count):
        for _ in range(rng.randrange(0, 3)):
            if i + 1 < count:
                deps[i].add(rng.randrange(i + 1, count))
    src = os.path.join(root, "src")
    words = ("value", "result", "options", "callback", "index", "buffer", "stream", "module",
             "return", "function", "const", "length", "object", "string", "number", "error")
    for i, name in enumerate(names):
        d = os.path.join(src, f"p{i:03d}")
        os.makedirs(os.path.join(d, "lib"), exist_ok=True)
        manifest = {
            "name": name,
            "version": "1.0.0",
            "description": f"offpack benchmark package {i}",
            "main": "index.js",
            "license": "MIT",
            "dependencies": {names[j]: "^1.0.0" for j in sorted(deps[i])},
        }
        with open(os.path.join(d, "package.json"), "w") as f:
            json.dump(manifest, f, indent=2)
        requires = "".join(f"const d{j} = require({json.dumps(names[j])});\n" for j in sorted(deps[i]))
        with open(os.path.join(d, "index.js"), "w") as f:
            f.write(f"'use strict';\n{requires}module.exports = require('./lib/main');\n")
        # Source of 2-40 KB, code-like (compresses as JS does, ~4x): a realistic small package.
        lines = []
        for k in range(rng.randrange(40, 800)):
            w = [rng.choice(words) for _ in range(6)]
            lines.append(f"function {w[0]}_{k}({w[1]}, {w[2]}) {{ return {w[3]}.{w[4]}({w[5]}, {k}); }}")
        with open(os.path.join(d, "lib", "main.js"), "w") as f:
            f.write("'use strict';\n" + "\n".join(lines) + "\nmodule.exports = { name: %s };\n" % json.dumps(name))
        with open(os.path.join(d, "README.md"), "w") as f:
            f.write(f"# {name}\n\nA package of the offpack benchmark.\n")
    app = os.path.join(root, "app")
    os.makedirs(app, exist_ok=True)
    with open(os.path.join(app, "package.json"), "w") as f:
        json.dump({"name": "offpack-bench-app", "version": "1.0.0", "private": True,
                   "dependencies": {names[i]: "^1.0.0" for i in range(roots)}}, f, indent=2)


def tarball_path(name, version):
    unscoped = name.split("/", 1)[1] if name.startswith("@") else name
    return f"/{name}/-/{unscoped}-{version}.tgz"


def npm_registry(root, packed):
    with open(packed) as f:
        entries = json.load(f)
    manifests = {}
    for d in os.listdir(os.path.join(root, "src")):
        with open(os.path.join(root, "src", d, "package.json")) as f:
            m = json.load(f)
        manifests[m["name"]] = m
    out = os.path.join(root, "packuments")
    os.makedirs(out, exist_ok=True)
    for e in entries:
        name, version = e["name"], e["version"]
        manifest = dict(manifests[name])
        # `npm pack` names a scoped tarball scope-name-version.tgz: the registry's path has the
        # unscoped name, as offpack's.
        dest = os.path.join(root, "tarballs", tarball_path(name, version).lstrip("/"))
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        os.replace(os.path.join(root, "tarballs", e["filename"]), dest)
        manifest["_id"] = f"{name}@{version}"
        manifest["dist"] = {
            "tarball": PLACEHOLDER + tarball_path(name, version),
            "integrity": e["integrity"],
            "shasum": e["shasum"],
        }
        doc = {"name": name, "dist-tags": {"latest": version}, "versions": {version: manifest}}
        with open(os.path.join(out, urllib.parse.quote(name, safe="") + ".json"), "w") as f:
            json.dump(doc, f)


class Registry(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body are two writes: without TCP_NODELAY the body waits for the delayed ACK of
    # the headers (40 ms a request on Linux).
    disable_nagle_algorithm = True
    root = "."

    def log_message(self, *args):
        pass

    def do_GET(self):
        path = urllib.parse.urlsplit(self.path).path
        if "/-/" in path:
            file = os.path.join(self.root, "tarballs", urllib.parse.unquote(path).lstrip("/"))
            if ".." in path or not os.path.isfile(file):
                return self.send_error(404)
            with open(file, "rb") as f:
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(os.fstat(f.fileno()).st_size))
                self.end_headers()
                shutil.copyfileobj(f, self.wfile)
            return
        name = urllib.parse.unquote(path.lstrip("/"))
        file = os.path.join(self.root, "packuments", urllib.parse.quote(name, safe="") + ".json")
        if not os.path.isfile(file):
            return self.send_error(404)
        with open(file) as f:
            body = f.read().replace(PLACEHOLDER, f"http://{self.headers.get('Host')}").encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def registry(root, portfile):
    Registry.root = root
    server = ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    server.daemon_threads = True
    with open(portfile + ".part", "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(portfile + ".part", portfile)
    server.serve_forever()


def lock_packages(lock):
    with open(lock) as f:
        doc = json.load(f)
    for path, entry in sorted(doc.get("packages", {}).items()):
        if not path or "resolved" not in entry:
            continue
        name = entry.get("name") or path.rsplit("node_modules/", 1)[1]
        yield name, entry


def npm_request(lock, out):
    npm = [{"service": "bench", "name": name, "version": e["version"], "resolved": e["resolved"],
            "integrity": e.get("integrity")} for name, e in lock_packages(lock)]
    write_request(out, [], npm)


def pip_request(reqs, out):
    with open(reqs) as f:
        text = f.read()
    python = [{"service": "bench", "image": "python:3.11-slim", "image_id": "", "platform": "linux/amd64",
               "files": [{"path": "requirements.txt", "content": text}],
               "requirement_files": ["requirements.txt"]}]
    write_request(out, python, [])


def write_request(out, python, npm):
    with open(out, "w") as f:
        json.dump({"offpack_request": 1, "project": "offpack-bench-packages", "created": "2026-12-04T00:00:00Z",
                   "python": python, "npm": npm}, f, indent=1)


def pin(downloads, out):
    pins = []
    for filename in sorted(os.listdir(downloads)):
        m = re.match(r"^([^-]+)-([^-]+)-", filename)
        if filename.endswith(".whl") and m:
            pins.append(f"{m.group(1).replace('_', '-').lower()}=={m.group(2)}")
        elif filename.endswith((".tar.gz", ".zip")):
            sys.exit(f"{filename} is an sdist: pick a requirement set of wheels")
    with open(out, "w") as f:
        f.write("\n".join(pins) + "\n")


def find_links(store, ecosystem, dest):
    with open(os.path.join(store, "index.json")) as f:
        index = json.load(f)
    os.makedirs(dest, exist_ok=True)
    n = 0
    for p in index:
        if p["ecosystem"] != ecosystem:
            continue
        algo, hexd = p["digest"].split(":", 1)
        target = os.path.join(dest, p["filename"])
        if not os.path.exists(target):
            os.link(os.path.join(store, "blobs", algo, hexd), target)
        n += 1
    print(n)


def rewrite_lock(src, dst, old, new):
    with open(src) as f:
        text = f.read()
    with open(dst, "w") as f:
        f.write(text.replace(f'"resolved": "{old}/', f'"resolved": "{new}/'))


def main(argv):
    cmd, args = argv[1], argv[2:]
    if cmd == "npm-tree":
        npm_tree(args[0], int(args[1]))
    elif cmd == "npm-registry":
        npm_registry(*args)
    elif cmd == "registry":
        registry(*args)
    elif cmd == "npm-request":
        npm_request(*args)
    elif cmd == "pip-request":
        pip_request(*args)
    elif cmd == "pin":
        pin(*args)
    elif cmd == "find-links":
        find_links(*args)
    elif cmd == "rewrite-lock":
        rewrite_lock(*args)
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main(sys.argv)
