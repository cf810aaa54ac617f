#!/usr/bin/env bash
# Builds the Docker managed (v2) plugin from this tree, with no registry: a rootfs holding Node.js,
# iproute2's `ip` (with the shared libraries both need), dist/ and the production node_modules, next
# to packaging/plugin/config.json. Then, as root:
#   docker plugin create kuryr/kuryr:latest build/plugin
#   docker plugin set kuryr/kuryr:latest KURYR_NEUTRON_AUTH_TYPE=noauth KURYR_NEUTRON_ENDPOINT_OVERRIDE=http://127.0.0.1:9696
#   mkdir -p /etc/kuryr /run/openvswitch   # the plugin's mounts must exist (even without OVS)
#   docker plugin enable kuryr/kuryr:latest
# Usage: scripts/build-plugin.sh [OUTDIR]   (default build/plugin)
set -Eeuo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-$ROOT/build/plugin}
R=$OUT/rootfs
rm -rf "$OUT"
mkdir -p "$R/opt/kuryr" "$R/etc/kuryr" "$R/run/docker/plugins" "$R/tmp" "$R/proc" "$R/sys" "$R/dev"
cd "$ROOT"
npm run --silent build
cp -r dist package.json package-lock.json "$R/opt/kuryr/"
(cd "$R/opt/kuryr" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error)
# A binary and every shared library it loads, at the same paths.
copy_with_libs() {
  local bin lib
  for bin in "$@"; do
    install -D "$bin" "$R$bin"
    for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do install -D "$lib" "$R$lib"; done
  done
}
copy_with_libs "$(readlink -f "$(command -v node)")" "$(readlink -f "$(command -v ip)")"
# Open vSwitch backends (OVN, OVS): ovs-vsctl talks to the host's ovsdb through the mounted
# /run/openvswitch; ethtool switches tx offload off on a userspace (netdev) bridge.
for tool in ovs-vsctl ethtool; do
  if command -v "$tool" >/dev/null; then copy_with_libs "$(readlink -f "$(command -v "$tool")")"
  else echo "[build-plugin] $tool not on this host: the plugin will not plug into Open vSwitch" >&2; fi
done
[ -e "$R/usr/bin/node" ] || ln -s "$(readlink -f "$(command -v node)")" "$R/usr/bin/node"
ipbin=$(readlink -f "$(command -v ip)")
[ "$ipbin" = /usr/bin/ip ] || { mkdir -p "$R/usr/bin"; ln -sf "$ipbin" "$R/usr/bin/ip"; }
printf 'root:x:0:0:root:/root:/sbin/nologin\n' > "$R/etc/passwd"
# ovs-vsctl looks for /var/run/openvswitch/db.sock: /var/run is /run, as on the host.
mkdir -p "$R/var" && ln -sfn ../run "$R/var/run"
cp packaging/plugin/config.json "$OUT/config.json"
echo "[build-plugin] $OUT ($(du -sh "$OUT" | cut -f1))" >&2
