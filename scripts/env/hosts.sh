#!/usr/bin/env bash
# hosts.sh - simulated Docker hosts on this machine, for multi-host tests (issue 13).
#
# Usage: scripts/env/hosts.sh <command>
#   up N                 hosts host1..hostN (N <= 4), each: a network namespace kuryr-hostN and a
#                        persistent mount + UTS namespace (hostname hostN) kept by a keep-alive
#                        process; its own dockerd (socket /run/kuryr-hosts/hostN/docker.sock), kuryr
#                        daemon (`host = hostN`) and Neutron L2 agent (`host = hostN`), tunnels on
#                        the underlay bridge kh-br0 (169.254.100.0/24, hostN = 169.254.100.N)
#   down [HOST...]       tear down the named hosts (default: all, then the underlay and bridges):
#                        containers, networks and plugins removed through the host's own Docker and
#                        kuryr, every process of the host ended, its Neutron agents deleted, its
#                        namespaces, veths, cgroups and state removed
#   crash HOST           the host dies: SIGKILL every process of it, nothing cleaned (`up` again
#                        to recover; its kuryr then finds what its previous life left in Neutron)
#   status               per host: namespaces, daemons, the agent's liveness in Neutron
#   demo                 up 2, a container on host1 pinged from one on host2 over Neutron, down
#   exec HOST CMD...     run CMD inside the host (network + mount + UTS namespaces)
#   stop HOST SERVICE    stop one daemon of a host (kuryr, agent, dockerd); `kill HOST SERVICE`
#                        SIGKILLs it; `start HOST SERVICE` starts it again
#   Environment: KURYR_HOSTS_AGENT=0 (up without agents), KURYR_HOSTS_SCOPE=global (kuryr's
#   capability_scope), KURYR_HOSTS_LOCKED=1 (the caller holds the lock)
#   env                  print shell variables for tests (HOSTS, socket paths, addresses)
#
# neutron-server and RabbitMQ keep listening on 127.0.0.1 in the root namespace (kuryr-env.sh is
# unchanged): each host reaches them on its own 127.0.0.1:9696 / :5672 through socat, TCP in the
# host's namespace -> a unix socket under $STATE/bridge -> TCP 127.0.0.1 in the root namespace.
# Starting and stopping a host's Neutron agent (registered in the shared Neutron) and deleting it
# happen under the environment lock (flock -o /run/kuryr-env.lock), taken here for just those
# steps, unless a caller already holds it (an ancestor holds it, or KURYR_HOSTS_LOCKED=1).
set -Eeuo pipefail
set +m
trap 'printf "[hosts] ERROR: line %s: %s failed\n" "$LINENO" "$BASH_COMMAND" >&2' ERR
export LC_ALL=C.UTF-8

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
STATE=${KURYR_HOSTS_STATE:-/var/lib/kuryr-hosts}
RUNDIR=/run/kuryr-hosts                # hostN/docker.sock, visible from the root namespace
ENV_STATE=${KURYR_ENV_STATE:-/var/lib/kuryr-env}
BR=kh-br0 NET=169.254.100 PREFIX=24    # the underlay: a bridge with no address of its own
MAX_HOSTS=4
NEUTRON_PORT=9696 RABBIT_PORT=5672 SB_PORT=6642
NEUTRON_URL=http://127.0.0.1:$NEUTRON_PORT
IMAGE=kuryr-test/busybox:latest
DOCKER=/usr/bin/docker PY=/usr/bin/python3
# shellcheck source=ovs-agent-ini.sh
. "$HERE/ovs-agent-ini.sh"
KURYR_BIN=$ROOT/dist/kuryr.mjs
BACKEND=$(cat "$ENV_STATE/run/backend" 2>/dev/null || echo linuxbridge)

say() { printf '[hosts] %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }
now() { date +%s%3N; }

hdir() { echo "$STATE/hosts/$1"; }
netns() { echo "kuryr-$1"; }
hnum() { [[ $1 =~ ^host([1-9][0-9]*)$ ]] || die "bad host name '$1' (host1..host$MAX_HOSTS)"; echo "${BASH_REMATCH[1]}"; }
haddr() { echo "$NET.$(hnum "$1")"; }
hsock() { echo "$RUNDIR/$1/docker.sock"; }
known_hosts() { [ -d "$STATE/hosts" ] && find "$STATE/hosts" -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V || true; }

# ---- processes: <dir>/run/<name>.pid holds "pid starttime" -------------------------------------
starttime() { local s f; s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  read -ra f <<< "${s##*) }"; [ "${f[0]}" != Z ] && echo "${f[19]}"; }
alive() { [ -n "${1:-}" ] && [ "$(starttime "$1" 2>/dev/null)" = "${2:-x}" ]; }
pid_of() { local p s; [ -f "$1/run/$2.pid" ] && read -r p s < "$1/run/$2.pid" && alive "$p" "$s" && echo "$p"; }
# launch DIR NAME CMD...: in the background, own session, no inherited fd but stdio (a caller's
# flock must not outlive it), output to DIR/log/NAME.log
launch() {
  local dir=$1 name=$2 pid; shift 2
  mkdir -p "$dir/run" "$dir/log"
  (cd / && for fd in /proc/$BASHPID/fd/*; do fd=${fd##*/}; [ "$fd" -gt 2 ] && eval "exec $fd>&-"; done
   exec setsid "$@" </dev/null >>"$dir/log/$name.log" 2>&1) &
  pid=$!
  disown "$pid" 2>/dev/null || true   # no "Killed" job reports when `down` ends it in this shell
  echo "$pid $(starttime "$pid" || echo dead)" > "$dir/run/$name.pid"
}
kill_wait() { # pid starttime timeout_s
  local i; alive "$1" "$2" || return 0
  kill -TERM "$1" 2>/dev/null || true
  for ((i = 0; i < $3 * 10; i++)); do alive "$1" "$2" || return 0; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
  for ((i = 0; i < 30; i++)); do alive "$1" "$2" || return 0; sleep 0.1; done
}
stop_proc() { # dir name timeout [signal]
  local p s
  [ -f "$1/run/$2.pid" ] || return 0
  read -r p s < "$1/run/$2.pid" || true
  if [ "${4:-}" = KILL ]; then alive "$p" "$s" && kill -KILL "$p" 2>/dev/null || true
  else kill_wait "$p" "$s" "$3"; fi
  rm -f "$1/run/$2.pid"
}
wait_for() { # what timeout_s cmd...
  local what=$1 to=$2 t0; shift 2; t0=$(now)
  until "$@" >/dev/null 2>&1; do
    (($(now) - t0 < to * 1000)) || die "timeout (${to}s) waiting for $what"
    sleep 0.2
  done
}

# ---- entering a host ---------------------------------------------------------------------------
keepalive_pid() { pid_of "$(hdir "$1")" keepalive; }
in_host() { # HOST CMD...: run CMD in the host's network, mount and UTS namespaces
  local h=$1 ka; shift
  ka=$(keepalive_pid "$h") || die "$h is not up"
  nsenter -t "$ka" -m -u -n -- "$@"
}
hdocker() { local h=$1; shift; "$DOCKER" -H "unix://$(hsock "$h")" "$@"; }

# ---- Neutron (root namespace) ------------------------------------------------------------------
api() { curl -sS --fail-with-body -m 30 -X "$1" -H 'Content-Type: application/json' ${3:+-d "$3"} "$NEUTRON_URL/v2.0$2"; }
agent_binary() { case $1 in linuxbridge) echo neutron-linuxbridge-agent ;; ovs) echo neutron-openvswitch-agent ;; ovn) echo ovn-controller ;; esac; }
# "alive" when the host's agent is alive and (re)started at or after $2 (epoch seconds)
agent_alive() {
  api GET "/agents?host=$1&binary=$(agent_binary "$BACKEND")" | $PY -c '
import calendar, json, sys, time
a = json.load(sys.stdin)["agents"]
# OVN controller agents have no started_at (they are read from the chassis): alive is enough.
s = a[0].get("started_at") if a else None
ok = a and a[0]["alive"] and (s is None or calendar.timegm(time.strptime(s, "%Y-%m-%d %H:%M:%S")) >= int(sys.argv[1]))
sys.exit(0 if ok else 1)' "${2:-0}"
}
# Ports only this host's kuryr made (device_owner compute:kuryr, bound to it) that outlived its
# Docker: a host that is gone for good leaves none. (Not `kuryr gc --apply`: it treats every kuryr
# network no Docker network *of this host* uses as garbage, other hosts' included.)
delete_host_ports() {
  local id
  for id in $(api GET "/ports?binding:host_id=$1&device_owner=compute:kuryr&fields=id" | $PY -c 'import json,sys; print(" ".join(p["id"] for p in json.load(sys.stdin)["ports"]))'); do
    api DELETE "/ports/$id" >/dev/null && say "$1: deleted leftover Neutron port $id"
  done
}
delete_agents() { # host: every Neutron agent registered for it
  local id
  for id in $(api GET "/agents?host=$1&fields=id" | $PY -c 'import json,sys; print(" ".join(a["id"] for a in json.load(sys.stdin)["agents"]))'); do
    api DELETE "/agents/$id" >/dev/null && say "$1: deleted Neutron agent $id"
  done
}

# ---- shared pieces (root namespace) ------------------------------------------------------------
# What each host reaches in the root namespace: neutron-server, RabbitMQ, and with OVN the SB DB.
bridged() { echo "neutron:$NEUTRON_PORT rabbit:$RABBIT_PORT"; [ "$BACKEND" != ovn ] || echo "sb:$SB_PORT"; }
bridges_up() { # unix sockets in front of the root namespace's services, for every host
  mkdir -p "$STATE/bridge" "$STATE/run" "$STATE/log"; chmod 700 "$STATE/bridge"
  local svc port
  for svc in $(bridged); do
    port=${svc#*:} svc=${svc%:*}
    pid_of "$STATE" "bridge-$svc" >/dev/null && continue
    rm -f "$STATE/bridge/$svc.sock"
    launch "$STATE" "bridge-$svc" socat "UNIX-LISTEN:$STATE/bridge/$svc.sock,fork,mode=600" "TCP:127.0.0.1:$port"
  done
  wait_for "the Neutron bridge socket" 10 test -S "$STATE/bridge/neutron.sock"
  wait_for "the RabbitMQ bridge socket" 10 test -S "$STATE/bridge/rabbit.sock"
}
underlay_up() {
  ip link show "$BR" >/dev/null 2>&1 || ip link add "$BR" type bridge
  sysctl -qw "net.ipv6.conf.$BR.disable_ipv6=1"
  ip link set "$BR" up
}
busybox_rootfs() { # the test image's tree, as kuryr-env.sh's build_image makes it
  local r=$STATE/busybox
  [ -x "$r/bin/sh" ] && return 0
  rm -rf "$r"; mkdir -p "$r/bin" "$r/etc" "$r/proc" "$r/sys" "$r/dev" "$r/tmp"
  cp /bin/busybox "$r/bin/busybox"
  local a; for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$r/bin/$a"; done
  echo 'root:x:0:0:root:/root:/bin/sh' > "$r/etc/passwd"
}

# ---- one host ----------------------------------------------------------------------------------
# The keep-alive's first act: make the mount namespace the host's own (sysfs of its network
# namespace with the cgroup hierarchies kept, a private /run and /etc/docker, the socket directory
# shared with the root namespace), then hold it open.
write_ns_init() {
  cat > "$1/ns-init.sh" <<'EOF'
#!/bin/sh
# ns-init.sh HOST HDIR RUNDIR: runs as the keep-alive inside the host's new mount+UTS namespace
set -e
h=$1 hd=$2 rundir=$3
hostname "$h"
mkdir -p "$hd/mnt/cgroup" "$hd/mnt/sock"
mount --rbind /sys/fs/cgroup "$hd/mnt/cgroup"
mount -t sysfs sysfs /sys                       # this network namespace's /sys/class/net
mount --move "$hd/mnt/cgroup" /sys/fs/cgroup
mount --bind "$rundir/$h" "$hd/mnt/sock"
mount -t tmpfs -o mode=755 "kuryr-$h-run" /run # its own /run/docker/plugins, pid files, locks
mkdir -p "$rundir/$h" /run/docker/plugins /run/lock /run/sudo
mount --move "$hd/mnt/sock" "$rundir/$h"
mount -t tmpfs -o mode=755 "kuryr-$h-etc-docker" /etc/docker   # its own plugin specs, key.json
mkdir -p /etc/docker/plugins
echo $$ > "$hd/run/keepalive.ready"
exec sleep infinity
EOF
  chmod +x "$1/ns-init.sh"
}

host_namespaces() {
  local h=$1 hd ns addr; hd=$(hdir "$h") ns=$(netns "$h") addr=$(haddr "$h")
  mkdir -p "$hd/run" "$hd/log" "$hd/etc/kuryr" "$hd/etc/kuryr-plugin" "$hd/neutron/lock" "$RUNDIR/$h"
  ip netns list | grep -qw "^$ns" || ip netns add "$ns"
  if ! ip link show "kh-$h" >/dev/null 2>&1; then
    ip link add "kh-$h" type veth peer name "kh-$h-in"
    ip link set "kh-$h-in" netns "$ns"
    ip -n "$ns" link set "kh-$h-in" name uplink
  fi
  sysctl -qw "net.ipv6.conf.kh-$h.disable_ipv6=1"
  ip link set "kh-$h" master "$BR" up
  # The underlay address: on the uplink for the Linux bridge agent; with Open vSwitch (OVN, OVS) on
  # br-phy (start_ovs), never on both: a second `up` of a running host used to put it back on the
  # uplink, the userspace datapath then routed its tunnels out of the uplink, and br-phy dropped
  # them ("learned port is input port"): every cross-host packet was lost.
  ip -n "$ns" addr flush dev uplink
  [ "$BACKEND" != linuxbridge ] || ip -n "$ns" addr add "$addr/$PREFIX" dev uplink
  ip -n "$ns" link set uplink up
  ip -n "$ns" link set lo up
  if ! keepalive_pid "$h" >/dev/null; then
    write_ns_init "$hd"
    rm -f "$hd/run/keepalive.ready"
    launch "$hd" keepalive-unshare nsenter "--net=/run/netns/$ns" \
      unshare --mount --uts --propagation private --fork "$hd/ns-init.sh" "$h" "$hd" "$RUNDIR"
    wait_for "$h's namespaces" 10 test -s "$hd/run/keepalive.ready"
    local p; p=$(cat "$hd/run/keepalive.ready")
    wait_for "$h's keep-alive" 5 sh -c "grep -q sleep /proc/$p/cmdline"
    echo "$p $(starttime "$p")" > "$hd/run/keepalive.pid"
  fi
  # bridge netfilter is per network namespace: the agent's security groups need it
  in_host "$h" sysctl -qw net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1 \
    net.ipv4.ip_forward=1
}

start_bridges() { # the host's 127.0.0.1:9696 and :5672
  local h=$1 hd svc port; hd=$(hdir "$h")
  for svc in $(bridged); do
    port=${svc#*:} svc=${svc%:*}
    pid_of "$hd" "bridge-$svc" >/dev/null && continue
    launch "$hd" "bridge-$svc" nsenter -t "$(keepalive_pid "$h")" -m -u -n -- \
      socat "TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr,fork" "UNIX-CONNECT:$STATE/bridge/$svc.sock"
  done
  wait_for "$h to reach neutron-server" 15 in_host "$h" curl -sf -m 3 -o /dev/null "$NEUTRON_URL/v2.0/networks?limit=1"
}

start_dockerd() {
  local h=$1 hd; hd=$(hdir "$h")
  pid_of "$hd" dockerd >/dev/null && return 0
  mkdir -p "$hd/docker"
  launch "$hd" dockerd nsenter -t "$(keepalive_pid "$h")" -m -u -n -- \
    /usr/sbin/dockerd --data-root "$hd/docker" --exec-root /run/docker --pidfile /run/docker.pid \
    -H unix:///run/docker.sock -H "unix://$(hsock "$h")" --iptables=false --ip6tables=false \
    --bridge=none --cgroup-parent "kuryr-$h" --userland-proxy=false
  wait_for "$h's dockerd" 60 hdocker "$h" info
  if ! hdocker "$h" image inspect "$IMAGE" >/dev/null 2>&1; then
    busybox_rootfs
    tar -C "$STATE/busybox" -c . | hdocker "$h" import -c 'CMD ["/bin/sh"]' - "$IMAGE" >/dev/null
  fi
}

write_agent_config() {
  local h=$1 hd; hd=$(hdir "$h")
  cat > "$hd/etc/neutron.conf" <<EOF
[DEFAULT]
host = $h
transport_url = rabbit://guest:guest@127.0.0.1:$RABBIT_PORT/
state_path = $hd/neutron
[agent]
root_helper = sudo neutron-rootwrap /etc/neutron/rootwrap.conf
report_interval = 10
[oslo_concurrency]
lock_path = $hd/neutron/lock
[securitygroup]
enable_security_group = true
enable_ipset = true
EOF
  cat > "$hd/etc/linuxbridge_agent.ini" <<EOF
[vxlan]
enable_vxlan = true
local_ip = $(haddr "$h")
l2_population = true
[securitygroup]
firewall_driver = iptables
[agent]
polling_interval = 2
EOF
}

# with_lock CMD...: CMD (a function of this script) under the environment lock
with_lock() {
  if [ "${KURYR_HOSTS_LOCKED:-0}" = 1 ] || lock_held_by_ancestor; then "$@"
  else flock -o /run/kuryr-env.lock env KURYR_HOSTS_LOCKED=1 "$0" _locked "$@"; fi
}
# A caller that runs us under `flock -o /run/kuryr-env.lock …` holds the lock through that flock
# process, an ancestor of ours: taking it again would wait forever.
lock_held_by_ancestor() {
  local ino holder p=$$
  ino=$(stat -c %i /run/kuryr-env.lock 2>/dev/null) || return 1
  holder=$(awk -v ino="$ino" '$2 == "FLOCK" && $4 == "WRITE" && $6 ~ (":" ino "$") { print $5; exit }' /proc/locks)
  [ -n "$holder" ] || return 1
  while [ "$p" -gt 1 ]; do
    [ "$p" = "$holder" ] && return 0
    # The parent pid follows the command name, which may hold spaces and ')' ("npm run test:mu…").
    p=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{ print $2 }') || return 1
    [ -n "$p" ] || return 1
  done
  return 1
}

start_agent() { pid_of "$(hdir "$1")" agent >/dev/null || with_lock start_agent_locked "$1"; }
start_agent_locked() {
  local h=$1 hd since; hd=$(hdir "$h")
  pid_of "$hd" agent >/dev/null && return 0
  case $BACKEND in
    linuxbridge) ;;
    ovn) start_ovn_chassis "$h"; return ;;
    ovs) start_ovs_agent "$h"; return ;;
    *) die "backend $BACKEND: simulated hosts support linuxbridge, ovs and ovn (see docs/multihost.md)" ;;
  esac
  write_agent_config "$h"
  since=$(($(date +%s) - 1))
  launch "$hd" agent nsenter -t "$(keepalive_pid "$h")" -m -u -n -- \
    $PY "$ROOT/scripts/env/lb-agent-launcher.py" --config-file "$hd/etc/neutron.conf" \
    --config-file "$hd/etc/linuxbridge_agent.ini" --log-file "$hd/log/agent-neutron.log"
  wait_for "$h's Linux bridge agent to report alive" 90 agent_alive "$h" "$since"
}

# ---- OVN and OVS: per host its own ovsdb-server + ovs-vswitchd (userspace datapath), then -------
# ---- ovn-controller (OVN) or neutron-openvswitch-agent (ML2/OVS) --------------------------------
# In the host's private /run: /run/openvswitch (ovs-vsctl's and kuryr's default paths) and
# /run/ovn. The tunnel endpoint of the userspace datapath must sit on an OVS bridge: br-phy
# (netdev) holds the uplink veth and the host's underlay address (moved off the veth).
hvsctl() { local h=$1; shift; in_host "$h" ovs-vsctl --timeout=10 "$@"; }
start_ovs() {
  local h=$1 hd ka addr; hd=$(hdir "$h") ka=$(keepalive_pid "$h") addr=$(haddr "$h")
  local logargs=(-vconsole:info -vsyslog:off -vfile:off)
  in_host "$h" mkdir -p /run/openvswitch /run/ovn
  mkdir -p "$hd/ovs"
  [ -s "$hd/ovs/conf.db" ] || ovsdb-tool create "$hd/ovs/conf.db" /usr/share/openvswitch/vswitch.ovsschema
  if ! pid_of "$hd" ovsdb-server >/dev/null; then
    launch "$hd" ovsdb-server nsenter -t "$ka" -m -u -n -- ovsdb-server "$hd/ovs/conf.db" \
      --remote=punix:/run/openvswitch/db.sock --pidfile=/run/openvswitch/ovsdb-server.pid "${logargs[@]}"
    wait_for "$h's ovsdb-server" 20 hvsctl "$h" --no-wait get Open_vSwitch . _uuid
    hvsctl "$h" --no-wait init
  fi
  if ! pid_of "$hd" ovs-vswitchd >/dev/null; then
    launch "$hd" ovs-vswitchd nsenter -t "$ka" -m -u -n -- ovs-vswitchd unix:/run/openvswitch/db.sock \
      --pidfile=/run/openvswitch/ovs-vswitchd.pid "${logargs[@]}"
    wait_for "$h's ovs-vswitchd" 20 in_host "$h" sh -c \
      'ovs-appctl -t /run/openvswitch/ovs-vswitchd.$(cat /run/openvswitch/ovs-vswitchd.pid).ctl version'
  fi
  hvsctl "$h" --may-exist add-br br-phy -- set bridge br-phy datapath_type=netdev -- --may-exist add-port br-phy uplink
  wait_for "$h's br-phy" 10 in_host "$h" test -e /sys/class/net/br-phy
  in_host "$h" ip addr flush dev uplink
  in_host "$h" sh -c "ip -4 addr show dev br-phy | grep -q ' $addr/' || ip addr add $addr/$PREFIX dev br-phy"
  in_host "$h" ip link set br-phy up
  # the kernel's partial checksums do not survive AF_PACKET: the host's own traffic (Swarm)
  in_host "$h" ethtool -K br-phy tx off >/dev/null 2>&1 || true
  in_host "$h" ethtool -K uplink tx off >/dev/null 2>&1 || true
}
start_ovn_chassis() {
  local h=$1 hd since addr; hd=$(hdir "$h") addr=$(haddr "$h")
  start_ovs "$h"
  hvsctl "$h" set Open_vSwitch . external_ids:system-id="$h" external_ids:hostname="$h" \
    external_ids:ovn-remote="tcp:127.0.0.1:$SB_PORT" external_ids:ovn-encap-type=geneve \
    external_ids:ovn-encap-ip="$addr" external_ids:ovn-bridge=br-int external_ids:ovn-bridge-datapath-type=netdev \
    -- --may-exist add-br br-int -- set bridge br-int datapath_type=netdev fail_mode=secure \
    other_config:disable-in-band=true
  since=$(($(date +%s) - 1))
  launch "$hd" agent nsenter -t "$(keepalive_pid "$h")" -m -u -n -- ovn-controller unix:/run/openvswitch/db.sock \
    --pidfile=/run/ovn/ovn-controller.pid -vconsole:info -vsyslog:off -vfile:off
  wait_for "$h's ovn-controller to report alive" 90 agent_alive "$h" "$since"
}

# ML2/OVS: the agent makes br-int and br-tun (netdev, from datapath_type) in the host's own switch,
# which it reaches on the switch's unix socket in the host's private /run, and tunnels VXLAN from
# br-phy's address.
start_ovs_agent() {
  local h=$1 hd since; hd=$(hdir "$h")
  start_ovs "$h"
  write_agent_config "$h"
  ovs_agent_ini "$(haddr "$h")" unix:/run/openvswitch/db.sock 127.0.0.1 > "$hd/etc/openvswitch_agent.ini"
  since=$(($(date +%s) - 1))
  launch "$hd" agent nsenter -t "$(keepalive_pid "$h")" -m -u -n -- /usr/bin/neutron-openvswitch-agent \
    --config-file "$hd/etc/neutron.conf" --config-file "$hd/etc/openvswitch_agent.ini" \
    --log-file "$hd/log/agent-neutron.log"
  wait_for "$h's Open vSwitch agent to report alive" 90 agent_alive "$h" "$since"
}

write_kuryr_config() {
  local h=$1 hd; hd=$(hdir "$h")
  cat > "$hd/etc/kuryr/kuryr.conf" <<EOF
[DEFAULT]
host = $h
debug = true
capability_scope = ${KURYR_HOSTS_SCOPE:-local}
metrics_listen = 127.0.0.1:23751
[neutron]
auth_type = noauth
endpoint_override = $NEUTRON_URL
${KURYR_HOSTS_KURYR_EXTRA:-}
EOF
}

start_kuryr() {
  local h=$1 hd; hd=$(hdir "$h")
  pid_of "$hd" kuryr >/dev/null && return 0
  [ -f "$hd/etc/kuryr/kuryr.conf" ] || write_kuryr_config "$h"
  launch "$hd" kuryr nsenter -t "$(keepalive_pid "$h")" -m -u -n -- \
    "$KURYR_BIN" --config-file "$hd/etc/kuryr/kuryr.conf" serve
  wait_for "$h's kuryr socket" 20 in_host "$h" curl -sf -m 2 --unix-socket /run/docker/plugins/kuryr.sock \
    -X POST http://plugin/Plugin.Activate
}

host_up() {
  local h=$1 t0; t0=$(now)
  host_namespaces "$h"
  start_bridges "$h"
  # Open vSwitch, then kuryr, then dockerd (as a host boots them): a restarted dockerd's clean-up
  # of dead containers calls the driver, which unplugs their veths from the switch.
  [ "$BACKEND" = linuxbridge ] || start_ovs "$h"
  start_kuryr "$h"
  start_dockerd "$h"
  say "$h up ($(haddr "$h"), docker -H unix://$(hsock "$h")) in $((($(now) - t0)))ms"
}

# Every process of a host: those in its network or mount namespace (daemons, socats, privsep
# helpers, containerd and its shims). Containers have namespaces of their own: their processes are
# found as descendants of the shims.
host_pids() {
  local h=$1 ns mnt p kids; ns=$(netns "$h")
  { ip netns pids "$ns" 2>/dev/null || true
    local ka; if ka=$(keepalive_pid "$h"); then
      mnt=$(readlink "/proc/$ka/ns/mnt")
      for p in /proc/[0-9]*; do [ "$(readlink "$p/ns/mnt" 2>/dev/null)" != "$mnt" ] || echo "${p#/proc/}"; done
    fi; } | sort -un > "$STATE/pids.tmp" || true
  # descendants (container processes under the shims)
  kids=$(ps -e -o pid=,ppid= | awk 'NR==FNR { want[$1] = 1; next } { kid[$2] = kid[$2] " " $1 }
    END { for (p in want) { n = split(kid[p], q, " "); for (i = 1; i <= n; i++) { print q[i]; m = split(kid[q[i]], c, " "); for (j = 1; j <= m; j++) q[++n] = c[j] } } }' "$STATE/pids.tmp" -)
  { cat "$STATE/pids.tmp"; echo "$kids"; } | { grep -E '^[0-9]+$' || true; } | sort -un
  rm -f "$STATE/pids.tmp"
}

host_clean_docker() { # through the host's own Docker and kuryr, while they run
  local h=$1 ids n
  hdocker "$h" info >/dev/null 2>&1 || return 0
  if [ "$(hdocker "$h" info -f '{{.Swarm.LocalNodeState}}' 2>/dev/null)" = active ]; then
    hdocker "$h" service ls -q 2>/dev/null | xargs -r "$DOCKER" -H "unix://$(hsock "$h")" service rm >/dev/null 2>&1 || true
    sleep 2
    hdocker "$h" swarm leave -f >/dev/null 2>&1 || true
  fi
  ids=$(hdocker "$h" ps -aq) && [ -z "$ids" ] || hdocker "$h" rm -f $ids >/dev/null 2>&1 || true
  for n in $(hdocker "$h" network ls --filter type=custom -q 2>/dev/null); do
    hdocker "$h" network rm "$n" >/dev/null 2>&1 || say "$h: docker network rm $n failed"
  done
  for n in $(hdocker "$h" plugin ls -q 2>/dev/null); do
    hdocker "$h" plugin disable -f "$n" >/dev/null 2>&1 || true
    hdocker "$h" plugin rm -f "$n" >/dev/null 2>&1 || true
  done
}

host_down() {
  local h=$1 hd p ka; hd=$(hdir "$h")
  [ -d "$hd" ] || { say "$h: not up"; return 0; }
  if keepalive_pid "$h" >/dev/null; then
    host_clean_docker "$h"
    stop_proc "$hd" kuryr 15
    stop_proc "$hd" dockerd 30
  fi
  stop_proc "$hd" ovs-vswitchd 10; stop_proc "$hd" ovsdb-server 10
  # the lock only when there is an agent to stop or to delete from Neutron
  if pid_of "$hd" agent >/dev/null || [ "$(api GET "/agents?host=$h&fields=id" | $PY -c 'import json,sys; print(len(json.load(sys.stdin)["agents"]))')" != 0 ]; then
    with_lock stop_agent_and_delete "$h"
  fi
  host_kill "$h"
  delete_host_ports "$h"
  ip link del "kh-$h" 2>/dev/null || true
  ip netns del "$(netns "$h")" 2>/dev/null || true
  remove_cgroups "$h"
  umount -R "$RUNDIR/$h" 2>/dev/null || true
  rm -rf "$RUNDIR/$h" "$hd"
  say "$h down"
}

stop_agent_and_delete() {
  stop_proc "$(hdir "$1")" agent 20
  [ "$BACKEND" != ovn ] || ovn-sbctl --timeout=10 --db="unix:/run/ovn/ovnsb_db.sock" --if-exists chassis-del "$1" || true
  delete_agents "$1"
}

host_kill() { # SIGKILL whatever of the host still runs (all of it for `crash`)
  local h=$1 hd p pids i; hd=$(hdir "$h")
  for i in 1 2 3; do
    pids=$(host_pids "$h")
    [ -n "$pids" ] || break
    for p in $pids; do kill -KILL "$p" 2>/dev/null || true; done
    sleep 0.3
  done
  rm -f "$hd"/run/*.pid "$hd/run/keepalive.ready"
}

remove_cgroups() { # --cgroup-parent kuryr-HOST, in every hierarchy, deepest first
  local d
  find /sys/fs/cgroup -mindepth 2 -maxdepth 3 -type d -name "kuryr-$1" 2>/dev/null | while read -r d; do
    find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
}

cmd_up() {
  local n=${1:-2} i
  [[ $n =~ ^[1-9]$ ]] && [ "$n" -le $MAX_HOSTS ] || die "up N: 1..$MAX_HOSTS hosts"
  [ -x "$KURYR_BIN" ] || die "$KURYR_BIN missing: npm run build"
  curl -sf -m 5 -o /dev/null "$NEUTRON_URL/v2.0/networks?limit=1" || die "neutron-server does not answer on $NEUTRON_URL: scripts/kuryr-env.sh start"
  mkdir -p "$STATE/hosts" "$RUNDIR"
  underlay_up
  bridges_up
  local hosts=()
  for ((i = 1; i <= n; i++)); do host_up "host$i"; hosts+=("host$i"); done
  # last, all in one hold of the lock (other engineers may hold it for minutes)
  [ "${KURYR_HOSTS_AGENT:-1}" = 0 ] || with_lock start_agents "${hosts[@]}"
}
start_agents() { local h; for h in "$@"; do start_agent_locked "$h"; done; }

cmd_down() {
  local hosts=("$@") h
  [ ${#hosts[@]} -gt 0 ] || mapfile -t hosts < <(known_hosts)
  for h in "${hosts[@]}"; do [ -n "$h" ] && host_down "$h"; done
  if [ $# -eq 0 ] || [ -z "$(known_hosts)" ]; then
    stop_proc "$STATE" bridge-neutron 5; stop_proc "$STATE" bridge-rabbit 5; stop_proc "$STATE" bridge-sb 5
    ip link del "$BR" 2>/dev/null || true
    rm -rf "$STATE" "$RUNDIR"
    say "all down"
  fi
}

# demo: two hosts, one Docker network on both (host1 creates it, host2 joins the same Neutron
# network and subnet), a container on each, host2's pings host1's over Neutron; then all down.
cmd_demo() {
  local net=kuryr-demo cidr=10.213.250.0/24 id nid sid ip1 rc=0
  trap 'cmd_down >/dev/null 2>&1 || true' EXIT
  cmd_up 2
  hdocker host1 network create -d kuryr --ipam-driver kuryr --subnet $cidr $net >/dev/null
  id=$(hdocker host1 network inspect -f '{{.Id}}' $net)
  nid=$(api GET "/networks?tags=kuryr.net.uuid.lh:${id:0:32}&fields=id" | $PY -c 'import json,sys; print(json.load(sys.stdin)["networks"][0]["id"])')
  sid=$(api GET "/subnets?network_id=$nid&fields=id" | $PY -c 'import json,sys; print(json.load(sys.stdin)["subnets"][0]["id"])')
  hdocker host2 network create -d kuryr --ipam-driver kuryr --subnet $cidr -o "neutron.net.uuid=$nid" \
    -o "neutron.subnet.uuid=$sid" --ipam-opt "neutron.subnet.uuid=$sid" $net >/dev/null
  say "Docker network $net on host1 and host2 = Neutron network $nid"
  hdocker host1 run -d --name demo-1 --net $net "$IMAGE" sleep 600 >/dev/null
  hdocker host2 run -d --name demo-2 --net $net "$IMAGE" sleep 600 >/dev/null
  ip1=$(hdocker host1 inspect -f "{{(index .NetworkSettings.Networks \"$net\").IPAddress}}" demo-1)
  say "demo-1 on host1: $ip1; demo-2 on host2 pings it:"
  hdocker host2 exec demo-2 ping -c 3 "$ip1" || rc=$?
  hdocker host1 rm -f demo-1 >/dev/null; hdocker host2 rm -f demo-2 >/dev/null
  hdocker host2 network rm $net >/dev/null; hdocker host1 network rm $net >/dev/null
  trap - EXIT
  cmd_down
  return $rc
}

cmd_status() {
  local h hd rc=0 d
  echo "backend: $BACKEND underlay: $BR $NET.0/$PREFIX"
  for d in $(bridged | sed 's/:[0-9]*//g; s/\([a-z]*\)/bridge-\1/g'); do
    printf '%-16s %s\n' "$d" "$(pid_of "$STATE" "$d" >/dev/null && echo up || echo DOWN)"
  done
  for h in $(known_hosts); do
    hd=$(hdir "$h")
    printf '%s (%s, %s)\n' "$h" "$(haddr "$h")" "$(hsock "$h")"
    for d in keepalive $(bridged | sed 's/:[0-9]*//g; s/\([a-z]*\)/bridge-\1/g') dockerd \
      $([ "$BACKEND" = linuxbridge ] || echo ovsdb-server ovs-vswitchd) agent kuryr; do
      if pid_of "$hd" "$d" >/dev/null; then printf '  %-15s up    pid %s\n' "$d" "$(pid_of "$hd" "$d")"
      else printf '  %-15s DOWN\n' "$d"; rc=1; fi
    done
    printf '  %-15s %s\n' "neutron agent" "$(agent_alive "$h" 0 2>/dev/null && echo alive || echo 'not alive')"
  done
  exit $rc
}

cmd_service() { # stop|kill|start HOST SERVICE
  local op=$1 h=$2 s=$3 hd; hd=$(hdir "$h")
  [ -d "$hd" ] || die "$h is not up"
  case $op:$s in
    stop:kuryr) stop_proc "$hd" "$s" 20 ;;
    stop:agent) with_lock stop_proc "$hd" agent 20 ;;
    stop:dockerd) stop_proc "$hd" dockerd 30 ;;
    kill:agent) with_lock stop_proc "$hd" agent 0 KILL ;;
    kill:kuryr | kill:dockerd) stop_proc "$hd" "$s" 0 KILL ;;
    start:kuryr) start_kuryr "$h" ;;
    start:agent) start_agent "$h" ;;
    start:dockerd) start_dockerd "$h" ;;
    *) die "$op $s: services are kuryr, agent, dockerd" ;;
  esac
}

[ "$(id -u)" = 0 ] || die "must run as root"
case "${1:-}" in
  up) shift; cmd_up "$@" ;;
  down) shift; cmd_down "$@" ;;
  _locked) shift; "$@" ;;   # with_lock's re-entry
  crash) [ $# = 2 ] || die "crash HOST"; hnum "$2" >/dev/null; host_kill "$2"; say "$2 crashed" ;;
  status) cmd_status ;;
  demo) cmd_demo ;;
  exec) [ $# -ge 3 ] || die "exec HOST CMD..."; h=$2; shift 2; in_host "$h" "$@" ;;
  stop | kill | start) [ $# = 3 ] || die "$1 HOST SERVICE"; cmd_service "$@" ;;
  env) echo "KURYR_HOSTS=\"$(known_hosts | tr '\n' ' ')\""; echo "KURYR_HOSTS_RUNDIR=$RUNDIR"
    echo "KURYR_HOSTS_STATE=$STATE"; echo "KURYR_HOSTS_UNDERLAY=$NET.0/$PREFIX" ;;
  *) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
