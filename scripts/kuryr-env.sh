#!/usr/bin/env bash
# kuryr-env.sh - local environment for the kuryr libnetwork driver on one
# Debian 12 host without systemd: dockerd, MariaDB, RabbitMQ, (Keystone),
# neutron-server and one Neutron backend (ML2/OVN, ML2/OVS or ML2/linuxbridge),
# all started by hand in the background and listening on 127.0.0.1 only.
#
# Usage: scripts/kuryr-env.sh <install|start|stop|status|restart>
#   install  apt-get the packages (skipped when installed)
#   start    install if needed, start what is not running, wait for readiness,
#            build the test image kuryr-test/busybox:latest, create the default
#            subnetpools "kuryr"/"kuryr6", write $STATE/neutron.env
#   stop     stop only what this script started (PID + /proc start time);
#            stop NAME... stops only those daemons (e.g. neutron-server)
#   status   backend, daemons up/down, Neutron URL, agent liveness; rc 1 if one is down
#   restart  stop + start
# Environment:
#   KURYR_ENV_BACKEND=ovn|ovs|linuxbridge  (default ovn) ML2/OVN: OVN NB/SB + northd,
#                         ovs-vswitchd (userspace datapath) + ovn-controller; ML2/OVS:
#                         ovs-vswitchd + neutron-openvswitch-agent; ML2/linuxbridge: the
#                         Linux bridge agent. `start` with another backend than the running
#                         one stops its agent, reconfigures and restarts neutron-server.
#   KURYR_ENV_KEYSTONE=1  Keystone auth (user kuryr, admin on project service)
#   KURYR_ENV_DOCKER=20.10|26  Docker engine (26: Debian 13's docker.io under $STATE/engines/26)
#   KURYR_ENV_STATE       state dir (default /var/lib/kuryr-env): etc/ log/ run/
set -Eeuo pipefail
set +m
trap 'printf "[kuryr-env] ERROR: line %s: %s failed\n" "$LINENO" "$BASH_COMMAND" >&2' ERR
export LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive DOCKER_HOST=unix:///var/run/docker.sock
unset DOCKER_CONTEXT

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE=${KURYR_ENV_STATE:-/var/lib/kuryr-env}
ETC=$STATE/etc LOG=$STATE/log RUN=$STATE/run
KEYSTONE=${KURYR_ENV_KEYSTONE:-0}
BACKEND=${KURYR_ENV_BACKEND:-ovn}
MODE=$([ "$KEYSTONE" = 1 ] && echo keystone || echo noauth)
HOST=$(hostname)                       # agent host == binding:host_id
IP=127.0.0.1
NEUTRON_URL=http://$IP:9696 KEYSTONE_URL=http://$IP:5000
VTEP_IP=169.254.254.1                  # VXLAN local_ip on a private veth
VTEP=kenv-vtep0 VTEP_PEER=kenv-vtep1   # carries only the VTEP /32
PHYS=kenv-phys0 PHYS_PEER=kenv-phys1   # physnet1 (flat); peer stays down
PY=/usr/bin/python3 DOCKER=/usr/bin/docker
IMAGE=kuryr-test/busybox:latest
POOL4=10.10.0.0/16 POOL6=fd4b:7572:7972::/48   # ULA global id = "Kuryr"
BASE_DAEMONS="dockerd mariadb epmd rabbitmq keystone neutron-server"
DAEMONS="$BASE_DAEMONS ovsdb-server ovs-vswitchd ovn-nb ovn-sb ovn-northd ovn-controller neutron-agent"
PACKAGES=(docker.io busybox-static neutron-server neutron-linuxbridge-agent
  mariadb-server rabbitmq-server python3-pymysql iputils-arping iproute2
  ebtables ipset conntrack openvswitch-switch ethtool)
[ "$KEYSTONE" = 0 ] || PACKAGES+=(keystone python3-keystoneclient)
case $BACKEND in
  ovn) PACKAGES+=(ovn-central ovn-host) ;;
  ovs) PACKAGES+=(neutron-openvswitch-agent) ;;
  linuxbridge) ;;
  *) printf '[kuryr-env] ERROR: KURYR_ENV_BACKEND=%s: use ovn, ovs or linuxbridge\n' "$BACKEND" >&2; exit 2 ;;
esac
RUN_AS_RABBIT=(setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups env HOME=/var/lib/rabbitmq)
TOKEN="" AGENT_SINCE=0
declare -A LAUNCHED=()

say() { printf '[kuryr-env] %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }
now() { date +%s%3N; }
since() { local d=$(($(now) - $1)); printf '%d.%03ds' $((d / 1000)) $((d % 1000)); }
timed() { local t0; t0=$(now); "$@"; say "step $1: $(since "$t0")"; }
. "$HERE/env/engine.sh"   # KURYR_ENV_DOCKER=20.10|26: which dockerd

# ---- processes: $RUN/<name>.pid holds "pid starttime" ---------------------
starttime() { # prints the start time (clock ticks after boot); fails for gone or zombie pids
  local s f; s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  read -ra f <<< "${s##*) }"; [ "${f[0]}" != Z ] && echo "${f[19]}"; }
alive() { [ -n "${1:-}" ] && [ "$(starttime "$1" 2>/dev/null)" = "${2:-x}" ]; }
running() { local p s; [ -f "$RUN/$1.pid" ] && read -r p s < "$RUN/$1.pid" && alive "$p" "$s"; }
pidof_() { cut -d' ' -f1 "$RUN/$1.pid"; }
launch() { # name cmd... ; stdout+stderr -> $LOG/name.log
  local name=$1 pid; shift
  [ -s "$LOG/$name.log" ] && mv -f "$LOG/$name.log" "$LOG/$name.log.1"
  # Daemons inherit no descriptor but stdio: a caller's lock (flock) must not outlive the caller.
  (cd / && for fd in /proc/$BASHPID/fd/*; do fd=${fd##*/}; [ "$fd" -gt 2 ] && eval "exec $fd>&-"; done
   exec setsid "$@" </dev/null >>"$LOG/$name.log" 2>&1) &
  pid=$!
  echo "$pid $(starttime "$pid" || echo dead)" > "$RUN/$name.pid"
  LAUNCHED[$name]=$(now)
  say "$name: launched (pid $pid, log $LOG/$name.log)"
}
# spawn NAME CMD...: launch unless ours is running or the service already answers
spawn() {
  local name=$1; shift
  if running "$name"; then return 0; fi
  if "probe_$name" >/dev/null 2>&1; then
    rm -f "$RUN/$name.pid"; say "$name: already answering, not started by us: reusing"; return 0
  fi
  launch "$name" "$@"
}
await() { # NAME TIMEOUT_S: poll probe_NAME
  local name=$1 to=$2 t0; t0=$(now)
  until "probe_$name" >/dev/null 2>&1; do
    if [ -f "$RUN/$name.pid" ] && ! running "$name"; then
      tail -n 15 "$LOG/$name.log" >&2 || true; die "$name exited during startup, see $LOG/$name.log"
    fi
    (($(now) - t0 < to * 1000)) || die "timeout (${to}s) waiting for $name, see $LOG/$name.log"
    sleep 0.2
  done
  if [ -n "${LAUNCHED[$name]:-}" ]; then say "$name: ready (confirmed $(since "${LAUNCHED[$name]}") after launch)"
  else say "$name: already running"; fi
}
descendants() { ps -e -o pid=,ppid= | awk -v root="$1" '{ kids[$2] = kids[$2] " " $1 }
  END { n = split(kids[root], q, " "); for (i = 1; i <= n; i++) {
          print q[i]; m = split(kids[q[i]], c, " "); for (j = 1; j <= m; j++) q[++n] = c[j] } }'; }
kill_wait() { # pid starttime timeout label
  local i; alive "$1" "$2" || return 0
  kill -TERM "$1" 2>/dev/null || true
  for ((i = 0; i < $3 * 10; i++)); do alive "$1" "$2" || return 0; sleep 0.1; done
  say "$4 (pid $1) ignored SIGTERM for $3s: SIGKILL"; kill -KILL "$1" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do alive "$1" "$2" || return 0; sleep 0.1; done
  say "WARNING: $4 (pid $1) still alive"
}
stop_one() { # name timeout
  local name=$1 pid st p pst extra=() t0; t0=$(now)
  [ -f "$RUN/$name.pid" ] || return 0
  read -r pid st < "$RUN/$name.pid" || true
  if alive "$pid" "$st"; then   # forked workers/children, e.g. neutron workers, containerd
    for p in $(descendants "$pid"); do pst=$(starttime "$p") && extra+=("$p $pst"); done
  fi
  if [ "$name" = neutron-agent ] && [[ $st =~ ^[0-9]+$ ]]; then   # privsep daemons re-parent to init
    while read -r p; do   # the agent logs "privsep daemon running as pid N"
      pst=$(starttime "$p") || continue
      if grep -q privsep-helper "/proc/$p/cmdline" && [ "$pst" -ge "$st" ]; then extra+=("$p $pst"); fi
    done < <(sed -n 's/.*privsep daemon running as pid \([0-9]*\).*/\1/p' "$LOG/$name.log" 2>/dev/null)
  fi
  if alive "$pid" "$st"; then say "stopping $name (pid $pid)"; kill_wait "$pid" "$st" "$2" "$name"; fi
  for p in "${extra[@]}"; do kill_wait "${p% *}" "${p#* }" 10 "$name helper"; done
  rm -f "$RUN/$name.pid"; say "$name: stopped in $(since "$t0") (+${#extra[@]} helpers)"
}

# ---- probes (readiness) -----------------------------------------------------
tcp_open() { (exec 3<>"/dev/tcp/$IP/$1") 2>/dev/null; }
http_code() { curl -s -o /dev/null -m 5 -w '%{http_code}' ${TOKEN:+-H "X-Auth-Token: $TOKEN"} "$1"; }
probe_dockerd() { $DOCKER info; }
probe_mariadb() { mysql -e 'select 1'; }
probe_epmd() { tcp_open 4369; }
probe_rabbitmq() { tcp_open 5672; }
probe_keystone() { [ "$(http_code "$KEYSTONE_URL/v3")" = 200 ]; }
probe_neutron-server() { [ "$(http_code "$NEUTRON_URL/v2.0/networks")" = 200 ]; }
probe_neutron-agent() { agent_info | grep -q '^alive'; }
agent_info() { # [backend] -> "alive|dead started_at" for this host's agent; alive needs started_at >= AGENT_SINCE
  curl -s -m 5 ${TOKEN:+-H "X-Auth-Token: $TOKEN"} \
    "$NEUTRON_URL/v2.0/agents?binary=$(agent_binary "${1:-$BACKEND}")&host=$HOST" | $PY -c '
import calendar, json, sys, time
try:
    a = json.load(sys.stdin)["agents"]
except Exception:
    sys.exit("unknown (no answer from neutron-server)")
if not a:
    sys.exit("not registered")
if "started_at" not in a[0]:  # an OVN chassis: alive while ovn-controller follows the NB config
    print("alive" if a[0]["alive"] else "dead", "chassis=%s" % a[0]["id"])
    sys.exit(0)
t = calendar.timegm(time.strptime(a[0]["started_at"], "%Y-%m-%d %H:%M:%S"))
ok = a[0]["alive"] and t >= int(sys.argv[1])
print("alive" if ok else "dead", "started_at=%sZ" % a[0]["started_at"].replace(" ", "T"))' "$AGENT_SINCE"
}
jpy() { $PY -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
api() { # METHOD PATH [JSON] -> body; fails on HTTP >= 400
  curl -sS --fail-with-body -m 30 -X "$1" -H 'Content-Type: application/json' \
    ${TOKEN:+-H "X-Auth-Token: $TOKEN"} ${3:+-d "$3"} "$NEUTRON_URL/v2.0$2"
}
keystone_token() { # user password -> token scoped to project service
  curl -s -m 10 -D - -o /dev/null -H 'Content-Type: application/json' -X POST "$KEYSTONE_URL/v3/auth/tokens" -d \
    "{\"auth\":{\"identity\":{\"methods\":[\"password\"],\"password\":{\"user\":{\"name\":\"$1\",\"domain\":{\"name\":\"Default\"},\"password\":\"$2\"}}},\"scope\":{\"project\":{\"name\":\"service\",\"domain\":{\"name\":\"Default\"}}}}}" \
    | awk 'tolower($1) == "x-subject-token:" { print $2 }' | tr -d '\r'
}

# shellcheck source=env/backends.sh
. "$HERE/env/backends.sh"

# ---- install + config ---------------------------------------------------------
cmd_install() {
  local missing   # unknown packages show up as "dpkg-query: no packages found matching NAME"
  missing=$(dpkg-query -W -f '${Status} ${Package}\n' "${PACKAGES[@]}" 2>&1 | awk '!/^install ok installed/ { print $NF }' || true)
  [ -n "$missing" ] || return 0
  say "installing: $(echo "$missing" | tr '\n' ' ')(log $LOG/apt.log)"
  [ -n "$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -print -quit)" ] || apt-get update -q
  local apt=(apt-get -o DPkg::Lock::Timeout=900 install -y -q --no-install-recommends)
  # This script runs the daemons itself: keep packages from starting their own copies (on a host
  # with an init system they would hold our ports). Only while installing, and only if the host
  # has no policy of its own.
  local policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy"
    trap 'rm -f /usr/sbin/policy-rc.d; trap - RETURN' RETURN
  fi
  "${apt[@]}" "${PACKAGES[@]}" >"$LOG/apt.log" 2>&1 ||
    { apt-get update -q >>"$LOG/apt.log" 2>&1 && "${apt[@]}" "${PACKAGES[@]}" >>"$LOG/apt.log" 2>&1; } \
    || { tail -n 20 "$LOG/apt.log" >&2; die "apt-get install failed, see $LOG/apt.log"; }
}

gen_pw() { tr -dc 'A-Za-z0-9' < /dev/urandom | head -c 24 || true; }
write_configs() {
  umask 077
  if [ ! -s "$ETC/secrets.env" ]; then
    { for v in NEUTRON_DB_PW KEYSTONE_DB_PW ADMIN_PW NEUTRON_SVC_PW KURYR_PW; do echo "$v=$(gen_pw)"; done; } > "$ETC/secrets.env"
  fi
  # shellcheck disable=SC1091
  . "$ETC/secrets.env"
  # Two API workers, as Neutron's own default (one per CPU) gives a 2-core host: with one, a
  # burst's port creates queued in one process on one core (0.7 s a port on OVN) while the other
  # core idled. ML2/OVN needs at least one: it handles OVSDB events only on servers in its hash
  # ring, which only API workers join (api_workers = 0: ports never turn ACTIVE).
  cat > "$ETC/neutron.conf" <<EOF
[DEFAULT]
host = $HOST
bind_host = $IP
bind_port = 9696
auth_strategy = $MODE
core_plugin = ml2
allow_overlapping_ips = true
api_workers = 2
rpc_workers = 1
rpc_state_report_workers = 0
graceful_shutdown_timeout = 5
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
transport_url = rabbit://guest:guest@$IP:5672/
state_path = $STATE/neutron
api_paste_config = /etc/neutron/api-paste.ini
global_physnet_mtu = 1500
[agent]
root_helper = sudo neutron-rootwrap /etc/neutron/rootwrap.conf
report_interval = 10
[database]
connection = mysql+pymysql://neutron:$NEUTRON_DB_PW@$IP/neutron?charset=utf8
[experimental]
linuxbridge = true
[keystone_authtoken]
www_authenticate_uri = $KEYSTONE_URL
auth_url = $KEYSTONE_URL
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = neutron
password = $NEUTRON_SVC_PW
region_name = RegionOne
[oslo_concurrency]
lock_path = $STATE/neutron/lock
[securitygroup]
enable_security_group = true
enable_ipset = true
$(write_backend_config)
EOF
  # agent-only options; unicast VXLAN (l2pop, no group) on the private VTEP
  cat > "$ETC/linuxbridge_agent.ini" <<EOF
[linux_bridge]
physical_interface_mappings = physnet1:$PHYS
[vxlan]
enable_vxlan = true
local_ip = $VTEP_IP
l2_population = true
[securitygroup]
firewall_driver = iptables
[agent]
polling_interval = 2
EOF
  cat > "$ETC/keystone.conf" <<EOF
[database]
connection = mysql+pymysql://keystone:$KEYSTONE_DB_PW@$IP/keystone?charset=utf8
[token]
provider = fernet
[fernet_tokens]
key_repository = $STATE/keystone/fernet-keys
[fernet_receipts]
key_repository = $STATE/keystone/fernet-keys
[credential]
key_repository = $STATE/keystone/credential-keys
EOF
  write_agent_configs
  umask 022
}

setup_host() {
  mkdir -p /run/openvswitch   # exists on every backend (a managed plugin may bind-mount it)
  ip link show "$VTEP" >/dev/null 2>&1 || ip link add "$VTEP" type veth peer name "$VTEP_PEER"
  ip link show "$PHYS" >/dev/null 2>&1 || ip link add "$PHYS" type veth peer name "$PHYS_PEER"
  local d; for d in $VTEP $VTEP_PEER $PHYS $PHYS_PEER; do sysctl -qw "net.ipv6.conf.$d.disable_ipv6=1"; done
  ip -4 addr show dev "$VTEP" | grep -q " $VTEP_IP/" || ip addr add "$VTEP_IP/32" dev "$VTEP"
  ip link set "$VTEP" up; ip link set "$PHYS_PEER" down
  [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] || modprobe br_netfilter 2>/dev/null || true
  sysctl -qw net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1 \
    || die "cannot set net.bridge.bridge-nf-call-*tables (br_netfilter missing?)"
}

# ---- services -----------------------------------------------------------------
launch_base() {   # no waiting here: dockerd, MariaDB and RabbitMQ boot in parallel
  engine_prepare; engine_dockerd_argv; engine_switch
  spawn dockerd "${ENGINE_DOCKERD[@]}"
  install -d -o mysql -g mysql /run/mysqld
  spawn mariadb /usr/sbin/mariadbd --user=mysql --bind-address=$IP --port=3306 \
    --skip-name-resolve --innodb-buffer-pool-size=64M --performance-schema=OFF
  spawn epmd "${RUN_AS_RABBIT[@]}" /usr/bin/epmd -address $IP
  await epmd 10
  # RUNNING_UNDER_SYSTEMD makes rabbitmq-server exec erl: the recorded pid is beam.smp
  launch_ovs
  spawn rabbitmq "${RUN_AS_RABBIT[@]}" RUNNING_UNDER_SYSTEMD=1 RABBITMQ_NODE_IP_ADDRESS=$IP ERL_EPMD_ADDRESS=$IP \
    "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1}" \
    /usr/lib/rabbitmq/bin/rabbitmq-server
}

db_sql() { # db password
  echo "CREATE DATABASE IF NOT EXISTS $1 CHARACTER SET utf8mb4;
CREATE USER IF NOT EXISTS '$1'@'$IP' IDENTIFIED BY '$2';
ALTER USER '$1'@'$IP' IDENTIFIED BY '$2';
GRANT ALL PRIVILEGES ON $1.* TO '$1'@'$IP';"
}
setup_databases() {
  await mariadb 60
  { db_sql neutron "$NEUTRON_DB_PW"; [ "$KEYSTONE" = 0 ] || db_sql keystone "$KEYSTONE_DB_PW"; } | mysql \
    || die "creating the databases failed, see $LOG/mariadb.log"
  local ver; ver=$(dpkg-query -W -f '${Version}' python3-neutron)
  if [ "$(cat "$STATE/neutron-db.stamp" 2>/dev/null)" = "$ver" ] &&
     mysql -e 'select 1 from neutron.alembic_version' >/dev/null 2>&1; then return 0; fi
  say "neutron-db-manage upgrade heads (log $LOG/neutron-db-manage.log)"
  neutron-db-manage --config-file "$ETC/neutron.conf" upgrade heads >"$LOG/neutron-db-manage.log" 2>&1 \
    || die "neutron-db-manage failed, see $LOG/neutron-db-manage.log"
  echo "$ver" > "$STATE/neutron-db.stamp"
}

start_keystone() {
  [ "$KEYSTONE" = 1 ] || return 0
  local ver km=(keystone-manage --config-file "$ETC/keystone.conf")
  ver=$(dpkg-query -W -f '${Version}' keystone)
  if [ "$(cat "$STATE/keystone-db.stamp" 2>/dev/null)" != "$ver" ]; then
    say "keystone db_sync + fernet + bootstrap (log $LOG/keystone-manage.log)"
    { "${km[@]}" db_sync &&
      "${km[@]}" fernet_setup --keystone-user root --keystone-group root &&
      "${km[@]}" credential_setup --keystone-user root --keystone-group root &&
      "${km[@]}" bootstrap --bootstrap-password "$ADMIN_PW" --bootstrap-region-id RegionOne \
        --bootstrap-admin-url "$KEYSTONE_URL/v3/" --bootstrap-internal-url "$KEYSTONE_URL/v3/" \
        --bootstrap-public-url "$KEYSTONE_URL/v3/"; } >"$LOG/keystone-manage.log" 2>&1 \
      || die "keystone-manage failed, see $LOG/keystone-manage.log"
    echo "$ver" > "$STATE/keystone-db.stamp"
  fi
  # 'Connection: close': keystoneauth reuses keep-alive sockets that uwsgi closed
  spawn keystone /usr/bin/uwsgi --plugins python3 --http-socket $IP:5000 \
    --wsgi-file /usr/bin/keystone-wsgi-public --master --processes 1 --threads 4 \
    --die-on-term --lazy-apps --enable-threads --buffer-size 65535 --add-header 'Connection: close' \
    --env OS_KEYSTONE_CONFIG_DIR="$ETC" --env OS_KEYSTONE_CONFIG_FILES=keystone.conf
  await keystone 90
  local sum; sum=$(md5sum < "$ETC/secrets.env")
  if [ "$(cat "$STATE/keystone-provisioned" 2>/dev/null)" != "$sum" ]; then
    KS_URL=$KEYSTONE_URL NEUTRON_URL=$NEUTRON_URL ADMIN_PW=$ADMIN_PW NEUTRON_SVC_PW=$NEUTRON_SVC_PW \
      KURYR_PW=$KURYR_PW $PY "$HERE/env/keystone-provision.py" >&2 2>>"$LOG/keystone-manage.log" \
      || die "keystone provisioning failed, see $LOG/keystone-manage.log"
    echo "$sum" > "$STATE/keystone-provisioned"
  fi
  TOKEN=$(keystone_token kuryr "$KURYR_PW")
  [ -n "$TOKEN" ] || die "no token for user kuryr from $KEYSTONE_URL, see $LOG/keystone.log"
}

# Another backend running: stop its agent/controllers and neutron-server (reconfigured below).
# Records the backend before anything of it starts, so a start that fails half-way is switched
# away from properly next time.
switch_backend() {
  local cur; cur=$(running_backend)
  if [ -n "$cur" ] && [ "$cur" != "$BACKEND" ]; then
    say "switching backend: $cur -> $BACKEND"
    stop_backend "$cur" switch
    stop_one neutron-server 30
    # What Neutron made under another backend has no OVN counterpart (a security group without
    # its port group: port creates fail with a 500, or traffic is dropped): synced once it runs.
    [ "$BACKEND" != ovn ] || touch "$RUN/ovn-sync"
  fi
  echo "$BACKEND" > "$RUN/backend"
}

start_neutron() {
  await rabbitmq 120
  if running neutron-server && [ "$(cat "$RUN/mode" 2>/dev/null)" != "$MODE" ]; then
    say "neutron-server runs in mode '$(cat "$RUN/mode" 2>/dev/null)', want '$MODE': restarting it"
    stop_one neutron-server 30
  fi
  spawn neutron-server /usr/bin/neutron-server --config-file "$ETC/neutron.conf" --log-file "$LOG/neutron-server.log"
  [ -z "${LAUNCHED[neutron-server]:-}" ] || echo "$MODE" > "$RUN/mode"
  await neutron-server 120
  sync_ovn
  # a stopped agent stays "alive" in the DB for 75s: start_l2 requires a fresh started_at
  start_l2
}

build_image() {
  await dockerd 60; engine_check
  $DOCKER image inspect "$IMAGE" >/dev/null 2>&1 && return 0
  local root; root=$(mktemp -d)
  mkdir -p "$root/bin" "$root/etc" "$root/proc" "$root/sys" "$root/dev" "$root/tmp"
  cp /bin/busybox "$root/bin/busybox"
  local a; for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$root/bin/$a"; done
  echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
  tar -C "$root" -c . | $DOCKER import -c 'CMD ["/bin/sh"]' - "$IMAGE" >/dev/null \
    || { rm -rf "$root"; die "docker import of $IMAGE failed, see $LOG/dockerd.log"; }
  rm -rf "$root"
  say "built $IMAGE ($($DOCKER run --rm --net none "$IMAGE" ls /bin | wc -l) applets)"
}

ensure_pool() { # name prefix default_prefixlen ip_version
  local n; n=$(api GET "/subnetpools?name=$1&fields=id" | jpy 'len(d["subnetpools"])') || die "GET subnetpools failed"
  [ "$n" = 0 ] || return 0
  api POST /subnetpools "{\"subnetpool\":{\"name\":\"$1\",\"prefixes\":[\"$2\"],\"default_prefixlen\":$3,\"shared\":true}}" \
    | jpy "d['subnetpool']['ip_version']" | grep -qx "$4" || die "creating subnetpool $1 failed"
  say "created subnetpool $1 ($2, /$3, IPv$4)"
}

write_env() {
  umask 077
  { echo "NEUTRON_URL=$NEUTRON_URL"; echo "KURYR_ENV_MODE=$MODE"
    [ "$KEYSTONE" = 0 ] || printf '%s\n' "OS_AUTH_URL=$KEYSTONE_URL/v3" OS_USERNAME=kuryr "OS_PASSWORD=$KURYR_PW" \
      OS_PROJECT_NAME=service OS_USER_DOMAIN_NAME=Default OS_PROJECT_DOMAIN_NAME=Default
  } > "$STATE/neutron.env.tmp"
  umask 022
  if cmp -s "$STATE/neutron.env.tmp" "$STATE/neutron.env"; then rm -f "$STATE/neutron.env.tmp"
  else mv -f "$STATE/neutron.env.tmp" "$STATE/neutron.env"; fi
}

# ---- commands -------------------------------------------------------------------
need_root() { [ "$(id -u)" = 0 ] || die "must run as root"; }
mkdirs() { mkdir -p "$ETC" "$LOG" "$RUN" "$STATE/neutron/lock" "$STATE/keystone"; chmod 700 "$STATE" "$ETC"; }

cmd_start() {
  local t0; t0=$(now)
  timed cmd_install
  timed switch_backend
  timed write_configs
  timed setup_host
  timed launch_base
  timed setup_ovs
  timed start_ovn_central
  timed setup_databases
  timed start_keystone
  timed start_neutron
  timed build_image
  timed ensure_pool kuryr "$POOL4" 24 4
  timed ensure_pool kuryr6 "$POOL6" 64 6
  write_env
  say "start done in $(since "$t0") (mode $MODE, backend $BACKEND); env: $STATE/neutron.env"
}

cmd_stop() {
  local t0 n ovs=0; t0=$(now)
  [ ! -f "$RUN/ovs-vswitchd.pid" ] || ovs=1
  stop_one neutron-agent 30; stop_one ovn-controller 30; stop_one neutron-server 30
  stop_one ovn-northd 10; stop_one ovn-sb 10; stop_one ovn-nb 10; stop_one ovs-vswitchd 30; stop_one ovsdb-server 10
  [ $ovs = 0 ] || remove_netdev_taps
  stop_one keystone 20; stop_one rabbitmq 60; stop_one epmd 10; stop_one mariadb 60; stop_one dockerd 60
  rm -f "$RUN/mode" "$RUN/backend"
  for n in $DAEMONS; do ! running "$n" || die "$n still running"; done
  say "stop done in $(since "$t0") (veths, bridges and agent iptables rules left in place)"
}

cmd_status() {
  local n rc=0 mode backend; mode=$(cat "$RUN/mode" 2>/dev/null || echo none)
  backend=$(running_backend); echo "backend: ${backend:-none}"
  for n in $BASE_DAEMONS $(backend_daemons "${backend:-$BACKEND}"); do
    if running "$n"; then printf '%-15s up    pid %s\n' "$n" "$(pidof_ "$n")"
    elif "probe_$n" >/dev/null 2>&1; then printf '%-15s up    (not started by kuryr-env)\n' "$n"
    elif [ "$n" = keystone ] && [ "$mode" != keystone ]; then printf '%-15s down  (not needed in mode %s)\n' "$n" "$mode"
    else printf '%-15s DOWN\n' "$n"; rc=1; fi
  done
  if [ "$mode" = keystone ]; then
    # shellcheck disable=SC1091
    . "$ETC/secrets.env"; TOKEN=$(keystone_token kuryr "$KURYR_PW")
  fi
  echo "neutron: $NEUTRON_URL (mode $mode) GET /v2.0/networks -> HTTP $(http_code "$NEUTRON_URL/v2.0/networks")"
  local a; a=$(agent_info "${backend:-$BACKEND}" 2>&1) || true
  echo "agent: $(agent_binary "${backend:-$BACKEND}") host=$HOST $a"
  case $a in alive*) ;; *) rc=1 ;; esac
  echo "docker: $(engine_running_version) (wanted $(engine_version))"
  echo "env: $STATE/neutron.env   logs: $LOG"
  return $rc
}

case "${1:-}" in
  install) need_root; mkdirs; timed cmd_install ;;
  start) need_root; mkdirs; cmd_start ;;
  stop) need_root
    if [ $# -gt 1 ]; then   # stop only the named daemons (fault tests); `start` brings them back
      shift; for n in "$@"; do
        [[ " $DAEMONS " == *" $n "* ]] || die "unknown daemon $n ($DAEMONS)"
        # "neutron-agent" is the L2 agent of whatever backend runs: ovn-controller on OVN
        [ "$n" != neutron-agent ] || n=$(l2_daemon "$(running_backend)")
        stop_one "$n" 30
      done
    else cmd_stop; fi ;;
  restart) need_root; cmd_stop; mkdirs; cmd_start ;;
  status) cmd_status ;;
  *) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
