#!/bin/sh
# A Debian bookworm minbase image (debootstrap) as an OCI layout of three gzip layers (usr/lib,
# the rest of usr, the rest), tagged "1": mkminbase.sh OUTDIR -> OUTDIR/oci. The debootstrapped
# root is kept in $BERTH_MINBASE_CACHE (default /var/cache/berth-minbase) for later calls.
# debootstrap fetches from Debian's mirror, the one network source this machine may use.
set -eu
out=${1:?usage: mkminbase.sh OUTDIR}
cache=${BERTH_MINBASE_CACHE:-/var/cache/berth-minbase}
command -v debootstrap >/dev/null || { echo "mkminbase: apt-get install debootstrap" >&2; exit 1; }
mkdir -p "$cache" "$out"
exec 9>"$cache/.lock"
flock 9
if [ ! -e "$cache/complete" ]; then
  rm -rf "$cache/rootfs"
  debootstrap --variant=minbase bookworm "$cache/rootfs" http://deb.debian.org/debian >"$cache/debootstrap.log" 2>&1 ||
    { echo "mkminbase: debootstrap failed; see $cache/debootstrap.log" >&2; exit 1; }
  touch "$cache/complete"
fi
rm -rf "$out/oci"
python3 - "$cache/rootfs" "$out/oci" <<'PY'
import gzip, hashlib, json, os, subprocess, sys
root, oci = sys.argv[1], sys.argv[2]
os.makedirs(os.path.join(oci, "blobs", "sha256"))
def blob(data):
    d = hashlib.sha256(data).hexdigest()
    open(os.path.join(oci, "blobs", "sha256", d), "wb").write(data)
    return "sha256:" + d, len(data)
# Device nodes and the kernel's file systems stay out, as in images Docker builds.
parts = [["usr/lib"], ["usr", "--exclude=usr/lib"],
         [".", "--exclude=./usr", "--exclude=./dev/*", "--exclude=./proc/*", "--exclude=./sys/*"]]
layers, diff_ids = [], []
for p in parts:
    tar = subprocess.run(["tar", "-C", root, "--numeric-owner", "-cf", "-"] + p[1:] + [p[0]],
                         check=True, capture_output=True).stdout
    diff_ids.append("sha256:" + hashlib.sha256(tar).hexdigest())
    d, n = blob(gzip.compress(tar, 6))
    layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": n})
config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["bash"]},
                     "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
cd, cn = blob(config)
manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cn},
                       "layers": layers}).encode()
md, mn = blob(manifest)
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
           "digest": md, "size": mn, "annotations": {"org.opencontainers.image.ref.name": "1"}}]},
          open(os.path.join(oci, "index.json"), "w"))
json.dump({"imageLayoutVersion": "1.0.0"}, open(os.path.join(oci, "oci-layout"), "w"))
print("image: %d MB compressed in %d layers" % (sum(l["size"] for l in layers) // 1000000, len(layers)))
PY
