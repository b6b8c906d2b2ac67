#!/usr/bin/env python3
"""A registry on 127.0.0.1 that serves broken and malicious images, one repository per case.

Only the read side of the distribution API is served (manifests and blobs by GET/HEAD); every
case is built in memory at start. Prints the port on the first line of stdout, then serves until
killed. Repositories:
  good/img        a valid one-layer image (control: the server itself works)
  bad/digest      the layer's bytes do not match the manifest's digest
  bad/truncated   the layer blob is cut off mid-stream (Content-Length promises more)
  bad/size        the manifest gives the layer a wrong size (digest right)
  bad/diffid      the layer is fine but the config's diff_id does not match it
  bad/config      the config blob's bytes do not match its digest
  bad/bigmanifest a manifest larger than 4 MiB
  bad/malformed   a manifest that is not JSON
  bad/mediatype   a manifest of an unknown media type
  bad/dotdot      a layer with a ../ path
  bad/abslink     a layer with a symlink to / followed by a file written through it
  bad/rellink     a layer with a symlink climbing out of the root, then a file through it
  bad/hardlink    a layer with a hardlink to a path outside the root
  bad/device      a layer with a character device node
"""
import gzip
import hashlib
import io
import json
import sys
import tarfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SCHEMA2 = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG = "application/vnd.docker.container.image.v1+json"
LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def tar_of(entries):
    """entries: (name, kind, payload) with kind file|dir|symlink|hardlink|chardev."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, kind, payload in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1700000000
            data = None
            if kind == "file":
                data = payload
                info.size = len(data)
                info.mode = 0o644
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
            elif kind == "symlink":
                info.type = tarfile.SYMTYPE
                info.linkname = payload
            elif kind == "hardlink":
                info.type = tarfile.LNKTYPE
                info.linkname = payload
            elif kind == "chardev":
                info.type = tarfile.CHRTYPE
                info.devmajor, info.devminor = payload
                info.mode = 0o666
            t.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


# repo -> {"manifest": (content_type, bytes)}, blobs: digest -> bytes (shared); per-repo quirks.
REPOS = {}
BLOBS = {}
TRUNCATE = set()


def image(repo, layer_entries, quirk=None):
    raw = tar_of(layer_entries)
    gz = gzip.compress(raw, mtime=0)
    diff_id = sha(raw)
    if quirk == "diffid":
        diff_id = sha(raw + b"x")
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/hello"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "evil_registry.py"}],
    }).encode()
    cdigest, ldigest = sha(config), sha(gz)
    lsize = len(gz)
    BLOBS[cdigest] = config
    BLOBS[ldigest] = gz
    if quirk == "digest":
        ldigest = sha(gz + b"other")
        BLOBS[ldigest] = gzip.compress(raw + b"\0" * 1024, mtime=0)
        lsize = len(BLOBS[ldigest])
    if quirk == "truncated":
        TRUNCATE.add(ldigest)
    if quirk == "size":
        lsize += 7
    if quirk == "config":
        cdigest = sha(config + b" ")
        BLOBS[cdigest] = config + b"  "
    manifest = {
        "schemaVersion": 2, "mediaType": SCHEMA2,
        "config": {"mediaType": CONFIG, "size": len(BLOBS[cdigest]), "digest": cdigest},
        "layers": [{"mediaType": LAYER, "size": lsize, "digest": ldigest}],
    }
    if quirk == "bigmanifest":
        manifest["annotations"] = {"padding": "x" * (5 << 20)}
    body = json.dumps(manifest).encode()
    ctype = SCHEMA2
    if quirk == "malformed":
        body = b'{"schemaVersion": 2, "layers": [ {'
    if quirk == "mediatype":
        ctype = "application/vnd.example.unknown.v1+json"
        manifest["mediaType"] = ctype
        body = json.dumps(manifest).encode()
    REPOS[repo] = (ctype, body)


HELLO = [("hello", "file", b"hello from the evil registry\n")]
image("good/img", HELLO)
for q in ["digest", "truncated", "size", "diffid", "config", "bigmanifest", "malformed",
          "mediatype"]:
    image("bad/" + q, [("hello", "file", ("case " + q + "\n").encode())], q)
image("bad/dotdot", [("../escaped", "file", b"out\n")])
image("bad/abslink", [("etc", "dir", None), ("root", "symlink", "/"),
                      ("root/tmp/evil-abslink", "file", b"out\n")])
image("bad/rellink", [("up", "symlink", "../../../../.."),
                      ("up/tmp/evil-rellink", "file", b"out\n")])
image("bad/hardlink", [("h", "hardlink", "../../../../etc/passwd")])
image("bad/device", [("dev", "dir", None), ("dev/evil", "chardev", (1, 3))])


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, ctype, body, head, length=None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        if ctype != "application/json" and status == 200 and "/manifests/" in self.path:
            self.send_header("Docker-Content-Digest", sha(body))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def serve(self, head):
        p = self.path.split("?")[0]
        if p in ("/v2", "/v2/"):
            return self.reply(200, "application/json", b"{}", head)
        if p.startswith("/v2/") and "/manifests/" in p:
            repo = p[4:p.index("/manifests/")]
            if repo in REPOS:
                ctype, body = REPOS[repo]
                return self.reply(200, ctype, body, head)
        if p.startswith("/v2/") and "/blobs/" in p:
            digest = p.rsplit("/", 1)[1]
            if digest in BLOBS:
                body = BLOBS[digest]
                if digest in TRUNCATE and not head:
                    self.reply(200, "application/octet-stream", body[: len(body) // 2], head,
                               length=len(body))
                    self.wfile.flush()
                    self.close_connection = True
                    return None
                return self.reply(200, "application/octet-stream", body, head)
        return self.reply(404, "application/json",
                          b'{"errors":[{"code":"NAME_UNKNOWN","message":"not here"}]}', head)

    def do_GET(self):
        self.serve(False)

    def do_HEAD(self):
        self.serve(True)


def main():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(srv.server_address[1], flush=True)
    sys.stdout.close()
    srv.serve_forever()


if __name__ == "__main__":
    main()
