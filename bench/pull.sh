#!/bin/sh
# Cold pull of the same ~100 MB multi-layer image (Debian minbase, three layers) from a local
# registry (Debian's docker-registry on 127.0.0.1) with berth, docker and podman in one run;
# prints medians and ratios to docker. Starts what it compares against and stops only what it
# started; every image is removed before each timed pull.
set -eu
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
need=""
for p in hyperfine debootstrap docker-registry skopeo python3 docker.io podman; do
  dpkg -s "$p" >/dev/null 2>&1 || need="$need $p"
done
if [ -n "$need" ] && [ -z "${BENCH_SKIP_INSTALL:-}" ]; then
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $need
fi
cargo build --release --locked -q
BERTH=$PWD/target/x86_64-unknown-linux-gnu/release/berth
work=$(mktemp -d /tmp/berth-pullbench.XXXXXX)
bridges_before=$(ip -o link show type bridge | awk -F': ' '{print $2}')
tables_before=$(nft list tables 2>/dev/null || true)
pids=""
cleanup() {
  for p in $pids; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
  umount -R /run/berth-pullbench-docker 2>/dev/null || true
  if [ -n "${P:-}" ]; then $P system reset -f >/dev/null 2>&1 || true; fi
  for b in docker0 podman0 bpull0; do
    if ip link show "$b" >/dev/null 2>&1 && ! printf '%s\n' "$bridges_before" | grep -qx "$b"; then
      ip link del "$b" 2>/dev/null || true
    fi
  done
  nft list tables 2>/dev/null | while read -r _ fam name; do
    printf '%s\n' "$tables_before" | grep -qx "table $fam $name" || nft delete table "$fam" "$name" 2>/dev/null || true
  done
  rm -rf "$work" /run/berth-pullbench /run/berth-pullbench-docker /run/berth-pullbench-containerd /run/berth-pullbench-podman
}
trap cleanup EXIT

# The image: a minbase Debian split into three layers (usr/lib, the rest of usr, the rest).
# debootstrap fetches from Debian's mirror, the one network source this machine may use.
debootstrap --variant=minbase bookworm "$work/rootfs" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1
python3 - "$work" <<'PY'
import gzip, hashlib, json, os, subprocess, sys
work = sys.argv[1]
root = os.path.join(work, "rootfs")
oci = os.path.join(work, "oci")
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

# The registry.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' "$work/registry" "$port" >"$work/registry.yml"
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
pids="$pids $!"
sleep 1
IMG=127.0.0.1:$port/bench/debian:1
skopeo copy -q --dest-tls-verify=false "oci:$work/oci:1" "docker://$IMG"

# berth, on roots of its own.
"$BERTH" daemon --data-root "$work/berth" --exec-root /run/berth-pullbench -H unix:///run/berth-pullbench/berth.sock \
  --config-file /nonexistent --bridge bpull0 --bip 10.227.0.1/24 >"$work/berthd.log" 2>&1 &
pids="$pids $!"
B="$BERTH -H unix:///run/berth-pullbench/berth.sock"
i=0; until $B version >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 100 ] || exit 1; sleep 0.1; done
set -- -n berth --prepare "$B rmi -f $IMG || true" "$B pull -q $IMG"
# docker: private containerd + dockerd (127.0.0.0/8 registries are plain HTTP for it).
if command -v dockerd >/dev/null && command -v containerd >/dev/null; then
  cdir=/run/berth-pullbench-containerd
  mkdir -p "$cdir"
  containerd --root "$work/containerd" --state "$cdir/state" --address "$cdir/containerd.sock" >"$work/containerd.log" 2>&1 &
  pids="$! $pids"
  i=0; until [ -S "$cdir/containerd.sock" ]; do i=$((i+1)); [ $i -lt 100 ] || break; sleep 0.1; done
  dockerd --data-root "$work/docker" --exec-root /run/berth-pullbench-docker --pidfile "$work/dockerd.pid" \
    -H unix:///run/berth-pullbench-docker.sock --containerd "$cdir/containerd.sock" \
    --iptables=false --ip6tables=false --bridge=none >"$work/dockerd.log" 2>&1 &
  pids="$! $pids"
  D="docker -H unix:///run/berth-pullbench-docker.sock"
  i=0; until $D info >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 150 ] || break; sleep 0.2; done
  set -- "$@" -n docker --prepare "$D rmi -f $IMG || true" "$D pull -q $IMG"
fi
if command -v podman >/dev/null; then
  P="podman --root $work/podman --runroot /run/berth-pullbench-podman --cgroup-manager=cgroupfs --events-backend=file"
  set -- "$@" -n podman --prepare "$P rmi -f $IMG || true" "$P pull -q --tls-verify=false $IMG"
fi
hyperfine --runs "$RUNS" --export-json "$work/pull.json" "$@" >/dev/null
python3 - "$work/pull.json" <<'PY'
import json, sys
res = json.load(open(sys.argv[1]))["results"]
med = {r["command"]: r["median"] for r in res}
base = med.get("docker")
print(f"{'engine':<10}{'median s':>10}{'x docker':>10}")
for name, m in med.items():
    ratio = f"{m / base:>10.2f}" if base else f"{'-':>10}"
    print(f"{name:<10}{m:>10.2f}{ratio}")
PY
