# shellcheck shell=bash
# Sourced by scripts/kuryr-env.sh: the Neutron backends (KURYR_ENV_BACKEND=ovn|ovs|linuxbridge).
# Uses kuryr-env.sh's helpers (say, die, spawn, await, stop_one, running, api, jpy, ...).
#
#   ovn          ovsdb-server + ovs-vswitchd (userspace datapath) + ovn-controller for this host,
#                OVN NB/SB ovsdb-servers + ovn-northd; neutron-server with mechanism_drivers=ovn
#   ovs          ovsdb-server + ovs-vswitchd (userspace datapath) + neutron-openvswitch-agent
#   linuxbridge  neutron-linuxbridge-agent
#
# There is no openvswitch kernel module here: every bridge has datapath_type=netdev (Open vSwitch's
# userspace datapath, no DPDK, no hugepages). Tunnels of the userspace datapath are routed by OVS
# itself, so the tunnel endpoint address (ENCAP_IP) sits on the internal port of a netdev bridge
# br-phy (OVS's userspace-tunneling how-to); with one host no tunnel is ever built, but the chassis
# and the agent need a local address.
OVS_RUN=/run/openvswitch               # the default rundir: ovs-vsctl, ovs-appctl and kuryr find it
OVN_RUN=/run/ovn                       # the default rundir of ovn-nbctl/ovn-sbctl/ovn-appctl
OVS_SOCK=$OVS_RUN/db.sock
OVS_DBDIR=$STATE/ovs OVN_DBDIR=$STATE/ovn
NB_PORT=6641 SB_PORT=6642
ENCAP_BR=br-phy ENCAP_IP=169.254.253.1 ENCAP_PREFIX=24
INT_BR=br-int
VSCTL=(ovs-vsctl "--db=unix:$OVS_SOCK" --timeout=10)
OVS_LOGARGS=(-vconsole:info -vsyslog:off -vfile:off)
BACKENDS="ovn ovs linuxbridge"

# Daemons each backend runs besides the base services, in start order.
backend_daemons() {
  case $1 in
    linuxbridge) echo neutron-agent ;;
    ovs) echo ovsdb-server ovs-vswitchd neutron-agent ;;
    ovn) echo ovsdb-server ovs-vswitchd ovn-nb ovn-sb ovn-northd ovn-controller ;;
  esac
}
# The daemon that wires ports on this host (what "stop neutron-agent" stops on every backend).
l2_daemon() { [ "$1" = ovn ] && echo ovn-controller || echo neutron-agent; }
# What Neutron's agent list calls it.
agent_binary() {
  case $1 in
    linuxbridge) echo neutron-linuxbridge-agent ;;
    ovs) echo neutron-openvswitch-agent ;;
    ovn) echo ovn-controller ;;
  esac
}
# The backend the running services were started with: $RUN/backend, or linuxbridge for an
# environment started before backends existed (its agent is the Linux bridge agent). Empty: none.
running_backend() {
  if [ -s "$RUN/backend" ]; then cat "$RUN/backend"; return 0; fi
  local d; for d in neutron-agent ovn-controller ovs-vswitchd neutron-server; do
    if running "$d"; then echo linuxbridge; return 0; fi
  done
}

# ---- neutron-server and agent configuration ------------------------------------
# Every type driver is loaded on every backend, so networks made under another backend still load.
write_backend_config() {
  local tenant mech plugins
  case $BACKEND in
    linuxbridge) tenant=vxlan mech=linuxbridge,l2population plugins=trunk ;;
    ovs) tenant=vxlan mech=openvswitch,l2population plugins=trunk ;;
    ovn) tenant=geneve mech=ovn plugins=ovn-router,trunk ;;   # no L3 plugin: OVN's maintenance worker fails
  esac
  cat <<EOF
[DEFAULT]
service_plugins = $plugins
[ml2]
type_drivers = flat,vxlan,geneve,local
tenant_network_types = $tenant
mechanism_drivers = $mech
extension_drivers = port_security
[ml2_type_flat]
flat_networks = physnet1
[ml2_type_vxlan]
vni_ranges = 1:1000
[ml2_type_geneve]
vni_ranges = 1:1000
max_header_size = 38
[ovn]
ovn_nb_connection = tcp:$IP:$NB_PORT
ovn_sb_connection = tcp:$IP:$SB_PORT
ovn_metadata_enabled = false
neutron_sync_mode = repair
EOF
}

# shellcheck source=ovs-agent-ini.sh
. "$HERE/env/ovs-agent-ini.sh"
write_agent_configs() { ovs_agent_ini "$ENCAP_IP" "tcp:$IP:6640" "$IP" > "$ETC/openvswitch_agent.ini"; }

# ---- Open vSwitch (ovn, ovs) -----------------------------------------------------
probe_ovsdb-server() { "${VSCTL[@]}" --no-wait get Open_vSwitch . _uuid; }
probe_ovs-vswitchd() { ovs-appctl -t "$OVS_RUN/ovs-vswitchd.$(cat "$OVS_RUN/ovs-vswitchd.pid").ctl" version; }
probe_ovn-nb() { ovsdb-client --timeout=2 list-dbs "unix:$OVN_RUN/ovnnb_db.sock" | grep -qx OVN_Northbound; }
probe_ovn-sb() { ovsdb-client --timeout=2 list-dbs "unix:$OVN_RUN/ovnsb_db.sock" | grep -qx OVN_Southbound; }
probe_ovn-northd() { ovn-appctl -t "$OVN_RUN/ovn-northd.$(cat "$OVN_RUN/ovn-northd.pid").ctl" status | grep -q active; }
# ovn-controller connected to the SB, programming br-int (OpenFlow 1.5: it has installed flows),
# and Neutron reporting its chassis alive for this host. Alive alone is not enough: a chassis that
# cannot program br-int still looks alive for agent_down_time after it last kept up.
# (grep -c, not -q, on the flow dump: -q stops reading at the first match, and under pipefail the
# dump's SIGPIPE failed the probe once br-int's flows outgrew the pipe, with many ports plugged.)
probe_ovn-controller() {
  ovn-appctl -t "$OVN_RUN/ovn-controller.$(cat "$OVN_RUN/ovn-controller.pid").ctl" connection-status | grep -qx connected &&
    [ "$(ovs-ofctl -O OpenFlow15 dump-flows $INT_BR | grep -c 'table=')" -gt 0 ] &&
    agent_info | grep -q '^alive'
}

launch_ovs() {   # no waiting here (the base services boot meanwhile)
  [ "$BACKEND" != linuxbridge ] || return 0
  mkdir -p "$OVS_RUN" "$OVS_DBDIR"
  [ -s "$OVS_DBDIR/conf.db" ] || ovsdb-tool create "$OVS_DBDIR/conf.db" /usr/share/openvswitch/vswitch.ovsschema
  spawn ovsdb-server ovsdb-server "$OVS_DBDIR/conf.db" "--remote=punix:$OVS_SOCK" \
    --remote=db:Open_vSwitch,Open_vSwitch,manager_options "--pidfile=$OVS_RUN/ovsdb-server.pid" "${OVS_LOGARGS[@]}"
  if [ "$BACKEND" = ovn ]; then
    mkdir -p "$OVN_RUN" "$OVN_DBDIR"
    local db; for db in nb sb; do
      local file=$OVN_DBDIR/ovn${db}_db.db
      # A new database next to a Neutron that has resources already: synced once neutron-server runs.
      [ -s "$file" ] || { ovsdb-tool create "$file" "/usr/share/ovn/ovn-$db.ovsschema" && touch "$RUN/ovn-sync"; }
      local port; port=$([ $db = nb ] && echo $NB_PORT || echo $SB_PORT)
      spawn ovn-$db ovsdb-server "$file" "--remote=punix:$OVN_RUN/ovn${db}_db.sock" "--remote=ptcp:$port:$IP" \
        "--pidfile=$OVN_RUN/ovn${db}_db.pid" "--unixctl=$OVN_RUN/ovn${db}_db.ctl" "${OVS_LOGARGS[@]}"
    done
  fi
  await ovsdb-server 30
  "${VSCTL[@]}" --no-wait init
  spawn ovs-vswitchd ovs-vswitchd "unix:$OVS_SOCK" "--pidfile=$OVS_RUN/ovs-vswitchd.pid" "${OVS_LOGARGS[@]}"
}

setup_ovs() {
  [ "$BACKEND" != linuxbridge ] || return 0
  await ovs-vswitchd 30
  # The integration bridges belong to the backend that last configured them, recorded in the OVS
  # database itself: a session killed under another backend (or stopped without switching) leaves
  # its br-int behind, and the OVS agent's br-int speaks OpenFlow 1.0-1.4 only, so ovn-controller
  # (1.5) could never program it and Neutron soon reports the chassis dead.
  local shaped; shaped=$("${VSCTL[@]}" --if-exists get Open_vSwitch . external_ids:kuryr-env-backend 2>/dev/null | tr -d '"')
  if [ "$shaped" != "$BACKEND" ]; then
    say "Open vSwitch bridges last configured for '${shaped:-unknown}': removing $INT_BR and br-tun for $BACKEND"
    "${VSCTL[@]}" --if-exists del-br $INT_BR -- --if-exists del-br br-tun -- del-manager
    "${VSCTL[@]}" set Open_vSwitch . external_ids:kuryr-env-backend="$BACKEND"
  fi
  # The tunnel endpoint: the internal port of a netdev bridge (recreated with each vswitchd start).
  "${VSCTL[@]}" --may-exist add-br $ENCAP_BR -- set bridge $ENCAP_BR datapath_type=netdev
  local i; for ((i = 0; i < 50; i++)); do [ -e /sys/class/net/$ENCAP_BR ] && break; sleep 0.1; done
  sysctl -qw "net.ipv6.conf.$ENCAP_BR.disable_ipv6=1" || true
  ip -4 addr show dev $ENCAP_BR | grep -q " $ENCAP_IP/" || ip addr add "$ENCAP_IP/$ENCAP_PREFIX" dev $ENCAP_BR
  ip link set $ENCAP_BR up
  # neutron-openvswitch-agent talks OVSDB over TCP (it would run ovs-vsctl set-manager itself).
  [ "$BACKEND" != ovs ] || "${VSCTL[@]}" set-manager "ptcp:6640:$IP"
  if [ "$BACKEND" = ovn ]; then
    # The chassis: hostname = this host's agent host (binding:host_id); the integration bridge is
    # created here (ovn-controller would too) so it is netdev from the start.
    "${VSCTL[@]}" set Open_vSwitch . external_ids:system-id="$HOST" external_ids:hostname="$HOST" \
      external_ids:ovn-remote="unix:$OVN_RUN/ovnsb_db.sock" external_ids:ovn-encap-type=geneve \
      external_ids:ovn-encap-ip=$ENCAP_IP external_ids:ovn-bridge=$INT_BR \
      external_ids:ovn-bridge-datapath-type=netdev \
      -- --may-exist add-br $INT_BR -- set bridge $INT_BR datapath_type=netdev fail_mode=secure \
      other_config:disable-in-band=true
  fi
}

start_ovn_central() {
  [ "$BACKEND" = ovn ] || return 0
  await ovn-nb 30; await ovn-sb 30
  spawn ovn-northd ovn-northd "--ovnnb-db=unix:$OVN_RUN/ovnnb_db.sock" "--ovnsb-db=unix:$OVN_RUN/ovnsb_db.sock" \
    "--pidfile=$OVN_RUN/ovn-northd.pid" "${OVS_LOGARGS[@]}"
  await ovn-northd 30
}

# OVN's northbound database made to agree with Neutron's (Neutron's own migration tool, repair
# mode) when it may not: after a switch from another backend, or a new database. ~4 s.
sync_ovn() {
  [ "$BACKEND" = ovn ] && [ -e "$RUN/ovn-sync" ] || return 0
  local t0; t0=$(date +%s%N)
  # The tool loads the qos service plugin, which wants its ML2 extension driver.
  printf '[ml2]\nextension_drivers = port_security,qos\n' > "$ETC/ovn-db-sync.conf"
  (cd "$STATE" && neutron-ovn-db-sync-util --config-file "$ETC/neutron.conf" --config-file "$ETC/ovn-db-sync.conf" \
    --ovn-neutron_sync_mode repair) > "$LOG/ovn-db-sync.log" 2>&1 ||
    die "neutron-ovn-db-sync-util failed, see $LOG/ovn-db-sync.log"
  rm -f "$RUN/ovn-sync"
  say "OVN northbound database synced with Neutron's in $((($(date +%s%N) - t0) / 1000000)) ms"
}

# The L2 side of the backend, once neutron-server answers.
start_l2() {
  case $BACKEND in
    linuxbridge)
      running neutron-agent || AGENT_SINCE=$(($(date +%s) - 1))
      spawn neutron-agent $PY "$HERE/env/lb-agent-launcher.py" --config-file "$ETC/neutron.conf" \
        --config-file "$ETC/linuxbridge_agent.ini" --log-file "$LOG/neutron-agent.log"
      await neutron-agent 90 ;;
    ovs)
      running neutron-agent || AGENT_SINCE=$(($(date +%s) - 1))
      spawn neutron-agent /usr/bin/neutron-openvswitch-agent --config-file "$ETC/neutron.conf" \
        --config-file "$ETC/openvswitch_agent.ini" --log-file "$LOG/neutron-agent.log"
      await neutron-agent 90 ;;
    ovn)
      spawn ovn-controller ovn-controller "unix:$OVS_SOCK" "--pidfile=$OVN_RUN/ovn-controller.pid" "${OVS_LOGARGS[@]}"
      await ovn-controller 60 ;;
  esac
}

# Stops a backend's own daemons (newest first). With "switch", also removes the bridges its agent
# made (br-int, br-tun), so the next OVS-based backend starts on a clean integration bridge.
stop_backend() {
  local b=$1 d ours=0
  [ ! -f "$RUN/ovs-vswitchd.pid" ] || ours=1
  if [ "${2:-}" = switch ] && running ovsdb-server; then
    "${VSCTL[@]}" --no-wait --if-exists del-br $INT_BR -- --if-exists del-br br-tun || true
  fi
  for d in $(backend_daemons "$b" | tr ' ' '\n' | tac); do stop_one "$d" 30; done
  [ $ours = 0 ] || remove_netdev_taps
}

# The userspace datapath's bridges are persistent tap devices that outlive ovs-vswitchd: once it
# we started is stopped, remove them (a restarted vswitchd makes them again).
remove_netdev_taps() {
  local t; for t in ovs-netdev $INT_BR br-tun $ENCAP_BR; do
    [ ! -e "/sys/class/net/$t/tun_flags" ] || ip link del "$t" 2>/dev/null || true
  done
}
