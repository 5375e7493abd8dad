#!/usr/bin/env python3
"""Helpers for tests/bench/run.sh: fixtures, measurements that need a tight loop, and the table.

Standard library only, so the benchmark runs on a fresh machine with nothing but python3.
Every subcommand is small and does one thing; run.sh decides what is measured and when.

  layout DIR BIG_MIB          an OCI image layout with refs big (one layer: BIG_MIB MiB of random
                              bytes), small (one 4 KiB file) and many (200 small-file layers)
  fill URL FROM TO            push tiny distinct images fill/rNNNN:v1 for NNNN in [FROM, TO)
  fill-static ROOT FROM TO    the same manifests as files under an nginx root
  start-time RUNS -- CMD...   median ms from spawn to the first HTTP answer on /v2/
  fn-start RUNS API BIN       median ms from spawning a Lambda function binary to its first answer
  oha SERVER ROW FILE         turn oha's JSON output into result lines
  table RESULTS               print the side-by-side table with ratios and targets
"""

import concurrent.futures
import gzip
import hashlib
import http.client
import io
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.parse
import zlib

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MANY_LAYERS = 200
CHUNK = 4 << 20


# ---------------------------------------------------------------------------------------------
# Fixtures


def _write_blob(blobs, data):
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, digest), "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + digest, "size": len(data)}


def _small_layer(blobs, name, size):
    """A gzipped tar holding one file of random bytes (a "small-file" layer). Layers are
    compressed as real images' are: skopeo would otherwise gzip them itself during the push
    and the row would time its compressor."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size = size
        info.mtime = 0
        tar.addfile(info, io.BytesIO(os.urandom(size)))
    tar = buf.getvalue()
    return _write_blob(blobs, gzip.compress(tar, mtime=0)), "sha256:" + hashlib.sha256(tar).hexdigest()


def _big_layer(blobs, mib):
    """A gzipped tar holding one file of `mib` MiB of random bytes, streamed to disk. Random
    bytes do not compress, so the gzip stream is made of stored blocks (level 0), as gzip would
    end up with anyway, only without the minutes spent trying."""
    size = mib << 20
    info = tarfile.TarInfo("big.bin")
    info.size = size
    info.mtime = 0
    plain, packed = hashlib.sha256(), hashlib.sha256()
    z = zlib.compressobj(0, zlib.DEFLATED, 31)
    tmp = os.path.join(blobs, "big.tmp")
    with open(tmp, "wb") as f:
        def put(b):
            plain.update(b)
            c = z.compress(b)
            packed.update(c)
            f.write(c)

        put(info.tobuf(format=tarfile.USTAR_FORMAT))
        left = size
        while left:
            n = min(CHUNK, left)
            put(os.urandom(n))
            left -= n
        # File data is padded to 512 bytes (already aligned), then two zero blocks end the archive.
        put(b"\0" * 1024)
        c = z.flush()
        packed.update(c)
        f.write(c)
        total = f.tell()
    os.replace(tmp, os.path.join(blobs, packed.hexdigest()))
    return {"digest": "sha256:" + packed.hexdigest(), "size": total}, "sha256:" + plain.hexdigest()


def _image(blobs, layers, ref):
    """An image of `layers` ((descriptor, diff_id) pairs); returns its index entry."""
    config = {
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [diff_id for _, diff_id in layers]},
        "config": {},
    }
    cdesc = _write_blob(blobs, json.dumps(config).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": dict(cdesc, mediaType=OCI_CONFIG),
        "layers": [dict(desc, mediaType=OCI_LAYER_GZIP) for desc, _ in layers],
    }
    mdesc = _write_blob(blobs, json.dumps(manifest).encode())
    return dict(mdesc, mediaType=OCI_MANIFEST, annotations={"org.opencontainers.image.ref.name": ref})


def cmd_layout(args):
    """Writes the fixture layout once; a complete layout (index.json present) is kept as is."""
    out, big_mib = args[0], int(args[1])
    if os.path.exists(os.path.join(out, "index.json")):
        return
    blobs = os.path.join(out, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)
    with open(os.path.join(out, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    manifests = [
        _image(blobs, [_big_layer(blobs, big_mib)], "big"),
        _image(blobs, [_small_layer(blobs, "hello.txt", 4096)], "small"),
        _image(blobs, [_small_layer(blobs, f"f{i:03}.txt", 1024 + 37 * i) for i in range(MANY_LAYERS)], "many"),
    ]
    # index.json last: its presence marks the layout complete.
    with open(os.path.join(out, "index.json.tmp"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": manifests}, f)
    os.replace(os.path.join(out, "index.json.tmp"), os.path.join(out, "index.json"))


# ---------------------------------------------------------------------------------------------
# Filling a registry with many small repositories


def _fill_manifest(i, config, layer):
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": dict(config, mediaType=OCI_CONFIG),
            "layers": [dict(layer, mediaType=OCI_LAYER_GZIP)],
            # Distinct bytes per repository: the store really holds that many manifests.
            "annotations": {"bench.fill": f"r{i:05}"},
        },
        separators=(",", ":"),
    ).encode()


FILL_CONFIG = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
FILL_LAYER = b"wharf benchmark fill layer\n"


class Client:
    """One keep-alive HTTP/1.1 connection per thread."""

    def __init__(self, base):
        u = urllib.parse.urlsplit(base)
        self.host, self.port = u.hostname, u.port
        self.local = threading.local()

    def request(self, method, path, body=None, headers=None):
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, resp.headers, data

    def upload(self, repo, data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        status, headers, _ = self.request("POST", f"/v2/{repo}/blobs/uploads/", b"")
        if status != 202:
            raise RuntimeError(f"POST upload in {repo}: {status}")
        loc = urllib.parse.urlsplit(headers["Location"])
        query = (loc.query + "&" if loc.query else "") + "digest=" + digest
        path = f"{loc.path}?{query}"
        status, _, body = self.request(
            "PUT", path, data, {"Content-Type": "application/octet-stream"}
        )
        if status != 201:
            raise RuntimeError(f"PUT blob in {repo}: {status} {body[:200]!r}")
        return {"digest": digest, "size": len(data)}

    def mount(self, repo, desc, source):
        status, _, body = self.request(
            "POST", f"/v2/{repo}/blobs/uploads/?mount={desc['digest']}&from={source}", b""
        )
        if status != 201:
            raise RuntimeError(f"mount into {repo}: {status} {body[:200]!r}")


def cmd_fill(args):
    """Pushes fill/rNNNN:v1 (a config and a layer mounted from fill/seed, and a distinct
    manifest) through the registry API, 8 requests in flight."""
    base, start, end = args[0], int(args[1]), int(args[2])
    client = Client(base)
    config = client.upload("fill/seed", FILL_CONFIG)
    layer = client.upload("fill/seed", FILL_LAYER)

    def one(i):
        repo = f"fill/r{i:05}"
        client.mount(repo, config, "fill/seed")
        client.mount(repo, layer, "fill/seed")
        status, _, body = client.request(
            "PUT", f"/v2/{repo}/manifests/v1", _fill_manifest(i, config, layer), {"Content-Type": OCI_MANIFEST}
        )
        if status != 201:
            raise RuntimeError(f"PUT manifest {repo}: {status} {body[:200]!r}")

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for f in [pool.submit(one, i) for i in range(start, end)]:
            f.result()


def cmd_fill_static(args):
    """The same manifests as `fill`, written as files for nginx."""
    root, start, end = args[0], int(args[1]), int(args[2])
    config = {"digest": "sha256:" + hashlib.sha256(FILL_CONFIG).hexdigest(), "size": len(FILL_CONFIG)}
    layer = {"digest": "sha256:" + hashlib.sha256(FILL_LAYER).hexdigest(), "size": len(FILL_LAYER)}
    for i in range(start, end):
        d = os.path.join(root, "v2", "fill", f"r{i:05}", "manifests")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "v1"), "wb") as f:
            f.write(_fill_manifest(i, config, layer))


# ---------------------------------------------------------------------------------------------
# Start-up times


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _first_answer(port, path, deadline):
    """Polls until an HTTP status line comes back; returns it."""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
    while time.perf_counter() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(request)
                line = s.recv(64)
                if line.startswith(b"HTTP/"):
                    return line.split(b"\r\n")[0].decode()
        except OSError:
            pass
        time.sleep(0.0002)
    raise RuntimeError("no answer within the deadline")


def cmd_start_time(args):
    """`start-time RUNS [--render TEMPLATE] [--reuse] -- CMD...`: CMD may use {port} and {dir}.
    {dir} is a fresh empty directory per start, or with `--reuse` one directory for every start,
    initialized by one untimed start first (a restart, the common case). `--render` writes
    TEMPLATE with the same placeholders to {dir}/conf, outside the timed span."""
    runs = int(args[0])
    sep = args.index("--")
    opts, cmd = args[1:sep], args[sep + 1 :]
    template = None
    if "--render" in opts:
        with open(opts[opts.index("--render") + 1]) as f:
            template = f.read()
    reuse = "--reuse" in opts
    with tempfile.TemporaryDirectory() as shared:
        if reuse:
            _start_once(cmd, template, shared)
        times = []
        for _ in range(runs):
            if reuse:
                times.append(_start_once(cmd, template, shared))
            else:
                with tempfile.TemporaryDirectory() as d:
                    times.append(_start_once(cmd, template, d))
    print(f"{statistics.median(times):.1f}")


def _start_once(cmd, template, d):
    """Spawns CMD, waits for its first answer on /v2/, stops it; returns the ms in between."""
    port = _free_port()
    subst = {"port": str(port), "dir": d}
    if template is not None:
        with open(os.path.join(d, "conf"), "w") as f:
            f.write(_render(template, subst))
    argv = [_render(a, subst) for a in cmd]
    with open(os.path.join(d, "log"), "ab") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True)
        try:
            _first_answer(port, "/v2/", t0 + 30)
            return (time.perf_counter() - t0) * 1000
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()


def _render(text, subst):
    for k, v in subst.items():
        text = text.replace("{" + k + "}", v)
    return text


APIGW_GET_V2 = {
    "version": "2.0",
    "routeKey": "GET /v2/",
    "rawPath": "/v2/",
    "rawQueryString": "",
    "headers": {"host": "bench.local"},
    "requestContext": {
        "accountId": "123456789012",
        "apiId": "bench",
        "domainName": "bench.local",
        "domainPrefix": "bench",
        "http": {"method": "GET", "path": "/v2/", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "bench"},
        "requestId": "bench",
        "routeKey": "GET /v2/",
        "stage": "$default",
        "time": "01/Jan/2026:00:00:00 +0000",
        "timeEpoch": 1767225600000,
    },
    "isBase64Encoded": False,
}


def cmd_fn_start(args):
    """`fn-start RUNS API_PORT BIN`: with `cargo lambda watch --only-lambda-apis` serving the
    runtime API on API_PORT, spawns BIN (a fresh process each run) and invokes it with an API
    Gateway `GET /v2/` event at once; the time is spawn to the invocation's answer (the cold
    start plus one request, as Lambda's init + first invoke)."""
    runs, api, binary = int(args[0]), int(args[1]), args[2]
    name = "_"  # the name `cargo lambda watch --only-lambda-apis` serves
    times = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as d:
            env = dict(os.environ)
            env.pop("AWS_CA_BUNDLE", None)
            env.update(
                AWS_LAMBDA_RUNTIME_API=f"http://127.0.0.1:{api}/.rt",
                AWS_LAMBDA_FUNCTION_NAME=name,
                AWS_LAMBDA_FUNCTION_VERSION="1",
                AWS_LAMBDA_FUNCTION_MEMORY_SIZE="256",
                WHARF_DATA_DIR=d,
            )
            log = open(os.path.join(d, "log"), "wb")
            conn = http.client.HTTPConnection("127.0.0.1", api, timeout=60)
            t0 = time.perf_counter()
            proc = subprocess.Popen([binary], env=env, stdout=log, stderr=log, start_new_session=True)
            try:
                conn.request(
                    "POST",
                    f"/2015-03-31/functions/{name}/invocations",
                    json.dumps(APIGW_GET_V2).encode(),
                    {"Content-Type": "application/json"},
                )
                resp = conn.getresponse()
                body = resp.read()
                elapsed = (time.perf_counter() - t0) * 1000
                if resp.status != 200 or b'"statusCode":200' not in body.replace(b" ", b""):
                    raise RuntimeError(f"invocation answered {resp.status}: {body[:300]!r}")
                times.append(elapsed)
            finally:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait()
                log.close()
    print(f"{statistics.median(times):.1f}")


# ---------------------------------------------------------------------------------------------
# Results and the table


def cmd_oha(args):
    """`oha SERVER ROW FILE`: requests/s, p50 and p99 (ms) of one oha run, as result lines.
    Any non-2xx answer makes the run count as failed: a fast error is no result."""
    server, row, path = args
    with open(path) as f:
        r = json.load(f)
    codes = r.get("statusCodeDistribution", {})
    bad = {c: n for c, n in codes.items() if not c.startswith("2")}
    errors = r.get("errorDistribution", {})
    if bad or errors or not codes:
        sys.exit(f"{server} {row}: non-2xx answers {bad} or errors {errors}")
    pct = r["latencyPercentiles"]
    rps = r["summary"]["requestsPerSec"]
    print(f"{row} req/s\t{server}\t{rps:.0f}")
    print(f"{row} p50 ms\t{server}\t{pct['p50'] * 1000:.2f}")
    print(f"{row} p99 ms\t{server}\t{pct['p99'] * 1000:.2f}")


SERVERS = ["wharf", "distribution", "nginx"]


def _target(row):
    """The issue's target for a row: (text, check(wharf, distribution, nginx) -> bool|None)."""
    def ratio(w, o, k, higher=True):
        if w is None or o is None:
            return None
        return w >= k * o if higher else w <= k * o

    if row.startswith("manifest") and row.endswith("req/s"):
        return "≥10× d, ≥0.7× n", lambda w, d, n: _both(ratio(w, d, 10), ratio(w, n, 0.7))
    if row.startswith("manifest") and row.endswith("p99 ms"):
        return "≤2× n", lambda w, d, n: ratio(w, n, 2, higher=False)
    if row.startswith("blob GET"):
        return "≥1.5× d, ≥0.9× n", lambda w, d, n: _both(ratio(w, d, 1.5), ratio(w, n, 0.9))
    if row.startswith("curl PUT"):
        return "≥1.5× d", lambda w, d, n: ratio(w, d, 1.5)
    if row.startswith("skopeo push"):
        return "≤1× d", lambda w, d, n: ratio(w, d, 1, higher=False)
    limits = {
        "peak RSS": 20,
        "idle RSS": 10,
        "start to first answer": 5,
        "function start": 15,
        "function zip": 5,
    }
    for prefix, limit in limits.items():
        if row.startswith(prefix):
            return f"≤{limit}", lambda w, d, n: None if w is None else w <= limit
    return "", lambda w, d, n: None


def _both(a, b):
    if a is None and b is None:
        return None
    return (a is not False) and (b is not False)


def _num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _fmt(v):
    if v is None:
        return "–"
    f = _num(v)
    if f is None:
        return v
    if f >= 100:
        return f"{f:,.0f}"
    return f"{f:.1f}" if f >= 10 else f"{f:.2f}"


def cmd_table(args):
    """Prints the results (lines `ROW<TAB>SERVER<TAB>VALUE`) as one Markdown table, rows in
    the order first seen, with Wharf/distribution and Wharf/nginx ratios and the target."""
    rows, values = [], {}
    with open(args[0]) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 3:
                continue
            row, server, value = parts
            if row not in values:
                rows.append(row)
                values[row] = {}
            values[row][server] = value
    out = [
        "| row | wharf | distribution | nginx | wharf/dist | wharf/nginx | target | met |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for row in rows:
        v = values[row]
        w, d, n = (_num(v.get(s)) for s in SERVERS)
        ratios = [f"{w / o:.2f}×" if w is not None and o else "–" for o in (d, n)]
        text, check = _target(row)
        met = check(w, d, n)
        mark = "" if met is None or not text else ("yes" if met else "**no**")
        cells = [row] + [_fmt(v.get(s)) for s in SERVERS] + ratios + [text, mark]
        out.append("| " + " | ".join(cells) + " |")
    print("\n".join(out))


COMMANDS = {
    "layout": cmd_layout,
    "fill": cmd_fill,
    "fill-static": cmd_fill_static,
    "start-time": cmd_start_time,
    "fn-start": cmd_fn_start,
    "oha": cmd_oha,
    "table": cmd_table,
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(__doc__)
    COMMANDS[sys.argv[1]](sys.argv[2:])
