# Shared by the bench scripts (sourced from the repository root): install what a script
# compares against, note the host's bridges, nft tables and engine cgroups before the run, and
# afterwards remove only what the run added.

# bench_need PKG...: apt-get install the missing packages (BENCH_SKIP_INSTALL=1 skips this).
bench_need() {
  missing=""
  for p in "$@"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
  done
  if [ -n "$missing" ] && [ -z "${BENCH_SKIP_INSTALL:-}" ]; then
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing
  fi
}

# Cgroup parents dockerd and podman leave behind.
bench_engine_cgroups() {
  find /sys/fs/cgroup -mindepth 2 -maxdepth 4 -type d \( -path '*/docker*' -o -path '*/libpod_parent*' \) 2>/dev/null
}

# bench_snapshot: what is there before the run.
bench_snapshot() {
  bench_bridges_before=$(ip -o link show type bridge | awk -F': ' '{print $2}')
  bench_tables_before=$(nft list tables 2>/dev/null || true)
  bench_cgroups_before=$(bench_engine_cgroups)
  bench_podman_cache_before=$([ -e /var/lib/containers ] && echo yes || true)
}

# bench_restore BRIDGE...: delete those bridges, and the nft tables (berth's, podman's
# netavark's) and engine cgroup parents, that were not there before the run.
bench_restore() {
  for b in "$@"; do
    if ip link show "$b" >/dev/null 2>&1 && ! printf '%s\n' "$bench_bridges_before" | grep -qx "$b"; then
      ip link del "$b" 2>/dev/null || true
    fi
  done
  nft list tables 2>/dev/null | while read -r _ fam name; do
    printf '%s\n' "$bench_tables_before" | grep -qx "table $fam $name" || nft delete table "$fam" "$name" 2>/dev/null || true
  done
  if [ -z "$bench_cgroups_before" ]; then
    for d in $(bench_engine_cgroups | sort -r); do rmdir "$d" 2>/dev/null || true; done
  fi
}

# bench_restore_podman_cache: podman's /var/lib/containers goes if the run made it.
bench_restore_podman_cache() {
  if [ -z "$bench_podman_cache_before" ]; then rm -rf /var/lib/containers; fi
}
