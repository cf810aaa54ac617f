#!/usr/bin/env bash
# Brings up everything on this host and shows kuryr working: Neutron all-in-one + Docker
# (scripts/kuryr-env.sh; ML2/OVN unless KURYR_ENV_BACKEND=ovs|linuxbridge), the kuryr daemon on
# /run/docker/plugins/kuryr.sock, then a kuryr network with two containers pinging each other
# over Neutron.
#   scripts/demo.sh          bring up and run the demo (the daemon keeps running afterwards)
#   scripts/demo.sh stop     stop the kuryr daemon started here (services: kuryr-env.sh stop)
set -Eeuo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${KURYR_ENV_STATE:-/var/lib/kuryr-env}
PIDFILE=$STATE/run/kuryr.pid
LOGFILE=$STATE/log/kuryr.log
CONF=${KURYR_CONFIG_FILE:-/etc/kuryr/kuryr.conf}
D=/usr/bin/docker
say() { printf '[demo] %s\n' "$*" >&2; }
[ "$(id -u)" = 0 ] || { say "run as root (kuryr creates host interfaces; the env script installs packages)"; exit 1; }

kuryr_running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }
stop_kuryr() {
  if kuryr_running; then
    kill -TERM "$(cat "$PIDFILE")"
    for _ in $(seq 50); do kuryr_running || break; sleep 0.1; done
    say "kuryr daemon stopped"
  fi
  rm -f "$PIDFILE"
}
if [ "${1:-}" = stop ]; then stop_kuryr; exit 0; fi

"$ROOT/scripts/kuryr-env.sh" start
cd "$ROOT"
[ -d node_modules ] || npm ci --no-audit --no-fund
npm run --silent build

# shellcheck disable=SC1091
. "$STATE/neutron.env"
# A kuryr.conf for this all-in-one, unless the operator already has one.
if [ ! -f "$CONF" ]; then
  mkdir -p "$(dirname "$CONF")"
  if [ "${KURYR_ENV_MODE:-noauth}" = keystone ]; then
    printf '[neutron]\nauth_type = password\nauth_url = %s\nusername = %s\npassword = %s\nproject_name = %s\nuser_domain_name = Default\nproject_domain_name = Default\n' \
      "$OS_AUTH_URL" "$OS_USERNAME" "$OS_PASSWORD" "$OS_PROJECT_NAME" > "$CONF"
  else
    printf '[neutron]\nauth_type = noauth\nendpoint_override = %s\n' "$NEUTRON_URL" > "$CONF"
  fi
  chmod 600 "$CONF"
  say "wrote $CONF"
fi

if ! kuryr_running; then
  mkdir -p "$(dirname "$PIDFILE")" "$(dirname "$LOGFILE")"
  # The bundle is executable: its #! line sets Node's flags and MALLOC_ARENA_MAX.
  setsid "$ROOT/dist/kuryr.mjs" --config-file "$CONF" serve >>"$LOGFILE" 2>&1 < /dev/null &
  echo $! > "$PIDFILE"
  for _ in $(seq 100); do [ -S /run/docker/plugins/kuryr.sock ] && break; sleep 0.1; done
  [ -S /run/docker/plugins/kuryr.sock ] || { say "kuryr did not start; see $LOGFILE"; exit 1; }
  say "kuryr daemon running (pid $(cat "$PIDFILE"), log $LOGFILE)"
fi

say "creating a kuryr network and two containers"
$D rm -f kuryr-demo-1 kuryr-demo-2 >/dev/null 2>&1 || true
$D network rm kuryr-demo >/dev/null 2>&1 || true
$D network create -d kuryr --ipam-driver kuryr --subnet 10.20.0.0/24 --gateway 10.20.0.1 kuryr-demo
$D run -d --name kuryr-demo-1 --net kuryr-demo kuryr-test/busybox:latest sleep 3600 >/dev/null
$D run -d --name kuryr-demo-2 --net kuryr-demo kuryr-test/busybox:latest sleep 3600 >/dev/null
ip2=$($D inspect -f '{{(index .NetworkSettings.Networks "kuryr-demo").IPAddress}}' kuryr-demo-2)
ep2=$($D inspect -f '{{(index .NetworkSettings.Networks "kuryr-demo").EndpointID}}' kuryr-demo-2)
if [ "${KURYR_ENV_MODE:-noauth}" = noauth ]; then
  say "Neutron port of kuryr-demo-2 (endpoint ${ep2:0:12}):"
  curl -s "$NEUTRON_URL/v2.0/ports?device_id=$ep2&fields=id&fields=status&fields=fixed_ips&fields=binding:host_id&fields=device_owner"; echo
fi
# The backend turns a port ACTIVE shortly after its tap appears (OVN: ~0.3 s, the Linux bridge
# agent: up to ~3 s): retry briefly.
for i in $(seq 30); do
  if $D exec kuryr-demo-1 ping -c 1 -W 1 "$ip2" >/dev/null 2>&1; then
    $D exec kuryr-demo-1 ping -c 3 "$ip2"
    say "OK: kuryr-demo-1 reaches kuryr-demo-2 ($ip2) over Neutron after ${i} attempt(s)"
    say "try: docker network ls; docker run --rm --net kuryr-demo kuryr-test/busybox ip addr"
    say "clean up: docker rm -f kuryr-demo-1 kuryr-demo-2; docker network rm kuryr-demo; scripts/demo.sh stop"
    exit 0
  fi
  sleep 0.5
done
say "FAILED: no ping reply from $ip2; see $LOGFILE and $STATE/log/ (ovn-controller.log, neutron-agent.log)"
exit 1
