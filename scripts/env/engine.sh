# shellcheck shell=bash
# engine.sh - which Docker engine kuryr-env.sh runs, sourced by it.
#
#   KURYR_ENV_DOCKER=20.10   Debian 12's docker.io (the system package, /usr/sbin/dockerd): default
#   KURYR_ENV_DOCKER=26      Debian 13's docker.io 26.1 and containerd, fetched from the Debian
#                            archive through an apt configuration of its own and unpacked (never
#                            installed) under $STATE/engines/26; runc stays bookworm's
#
# Uses from the caller: say, die, running, stop_one, $STATE, $LOG. Defines:
#   engine_version          the wanted major version ("20.10" or "26")
#   engine_prepare          fetch and unpack the engine if needed (idempotent; nothing for 20.10)
#   engine_dockerd_argv     sets the array ENGINE_DOCKERD: the full dockerd command line
#   engine_running_version  what the daemon on /var/run/docker.sock reports ("" if none answers)
#   engine_switch           stops our dockerd when it is another engine than the one wanted
#   engine_check            dies unless the daemon on the socket is the engine wanted
#
# Both engines listen on the same socket, so only one runs at a time: switching engines means
# stopping dockerd and starting it again with the other KURYR_ENV_DOCKER. Each keeps its images and
# containers in its own data root (20.10: /var/lib/docker, 26: /var/lib/docker-26).
# Never start Docker 26 with `--bridge none`: it deletes any interface named docker0, even one
# another daemon made. Both engines use the default bridge docker0 (one daemon at a time).

case "${KURYR_ENV_DOCKER:-20.10}" in   # checked once, here: later calls run in subshells
  20.10 | 20 | 26) ;;
  *) die "KURYR_ENV_DOCKER=${KURYR_ENV_DOCKER}: use 20.10 or 26" ;;
esac
ENGINE_SUITE=trixie                    # Debian 13
ENGINE_PKGS=(docker.io containerd)     # trixie's runc needs glibc 2.38; bookworm has 2.36
ENGINE_DOCKERD=()

engine_version() {
  case "${KURYR_ENV_DOCKER:-20.10}" in
    26) echo 26 ;;
    *) echo 20.10 ;;
  esac
}

engine_root() { echo "$STATE/engines/$(engine_version)"; }

# The Debian archive this host already uses (first bookworm source that is not -security), so the
# private configuration reaches the same mirror; KURYR_ENV_DEBIAN_MIRROR overrides it.
engine_mirror() {
  if [ -n "${KURYR_ENV_DEBIAN_MIRROR:-}" ]; then echo "$KURYR_ENV_DEBIAN_MIRROR"; return; fi
  local f uri
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    uri=$(awk 'BEGIN { RS = ""; FS = "\n" }
      /(^|\n)Suites:[^\n]*[ \t]bookworm([ \t]|\n|$)/ {
        for (i = 1; i <= NF; i++) if ($i ~ /^URIs:/) { split($i, u, /[ \t]+/); print u[2]; exit } }' "$f")
    [ -n "$uri" ] && { echo "$uri"; return; }
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    uri=$(awk '$1 == "deb" && $0 ~ / bookworm / { for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) { print $i; exit } }' "$f")
    [ -n "$uri" ] && { echo "$uri"; return; }
  done
  die "no Debian bookworm source in /etc/apt: set KURYR_ENV_DEBIAN_MIRROR to a Debian archive URL"
}

# apt-get with a configuration of its own: its own sources, lists, cache and (empty) dpkg status,
# nothing read from /etc/apt but the archive keyring. The system's apt state is never touched.
engine_apt() {
  local apt=$1; shift
  APT_CONFIG=$apt/apt.conf apt-get -q "$@"
}

engine_write_apt_conf() { # dir
  local apt=$1 keyring=/usr/share/keyrings/debian-archive-keyring.gpg mirror
  mirror=$(engine_mirror) || exit 1
  mkdir -p "$apt/parts" "$apt/state/lists/partial" "$apt/cache/archives/partial" "$apt/debs"
  rm -f "$apt/debs/"*.deb
  [ -f "$apt/state/status" ] || : > "$apt/state/status"
  [ -f "$keyring" ] || die "$keyring missing (package debian-archive-keyring)"
  echo "Types: deb
URIs: $mirror
Suites: $ENGINE_SUITE
Components: main
Signed-By: $keyring" > "$apt/debian.sources"
  # APT_CONFIG is read first, so Dir::Etc::parts here keeps /etc/apt/apt.conf.d out too.
  cat > "$apt/apt.conf" <<EOF
Dir::Etc::main "/dev/null";
Dir::Etc::parts "$apt/parts";
Dir::Etc::sourcelist "/dev/null";
Dir::Etc::sourceparts "$apt";
Dir::Etc::preferences "/dev/null";
Dir::Etc::preferencesparts "$apt/parts";
Dir::Etc::trusted "/dev/null";
Dir::Etc::trustedparts "$apt/parts";
Dir::State "$apt/state";
Dir::State::status "$apt/state/status";
Dir::Cache "$apt/cache";
Dir::Log "$apt";
APT::Architecture "$(dpkg --print-architecture)";
APT::Architectures { "$(dpkg --print-architecture)"; };
Acquire::Languages "none";
Acquire::Retries "3";
EOF
}

# Fetches Debian 13's docker.io and containerd and unpacks them under $STATE/engines/26/root.
# Done once: the stamp names the package versions unpacked; a later call only checks the binaries.
# To take a newer trixie build: rm -rf $STATE/engines/26 (images and containers are elsewhere).
engine_prepare() {
  [ "$(engine_version)" = 26 ] || return 0
  local root; root=$(engine_root)
  local apt=$root/apt prefix=$root/root stamp=$root/unpacked
  if [ -s "$stamp" ] && [ -x "$prefix/usr/sbin/dockerd" ] && [ -x "$prefix/usr/bin/containerd" ]; then
    return 0
  fi
  command -v runc >/dev/null || die "runc is not installed (Debian 12 package runc): Docker 26 runs bookworm's"
  local t0; t0=$(date +%s)
  say "engine 26: fetching ${ENGINE_PKGS[*]} from Debian $ENGINE_SUITE (private apt state in $apt)"
  engine_write_apt_conf "$apt"
  engine_apt "$apt" update >"$LOG/engine-apt.log" 2>&1 \
    || { tail -n 20 "$LOG/engine-apt.log" >&2; die "apt-get update ($ENGINE_SUITE, private) failed, see $LOG/engine-apt.log"; }
  (cd "$apt/debs" && engine_apt "$apt" download "${ENGINE_PKGS[@]}") >>"$LOG/engine-apt.log" 2>&1 \
    || { tail -n 20 "$LOG/engine-apt.log" >&2; die "apt-get download ${ENGINE_PKGS[*]} failed, see $LOG/engine-apt.log"; }
  rm -rf "$prefix.new"; mkdir -p "$prefix.new"
  local deb
  for deb in "$apt/debs/"*.deb; do dpkg-deb -x "$deb" "$prefix.new" || die "dpkg-deb -x $deb failed"; done
  # It must run on this host's glibc: a binary that doesn't is caught here, not at dockerd start.
  local check
  for check in 'usr/sbin/dockerd --version' 'usr/bin/containerd --version' 'usr/bin/containerd-shim-runc-v2 -v'; do
    [ -x "$prefix.new/${check% *}" ] || die "engine 26: ${check% *} missing from ${ENGINE_PKGS[*]}"
    "$prefix.new/${check% *}" "${check#* }" >/dev/null 2>>"$LOG/engine-apt.log" \
      || die "engine 26: ${check% *} does not run on this host, see $LOG/engine-apt.log"
  done
  rm -rf "$prefix"; mv "$prefix.new" "$prefix"
  (cd "$apt/debs" && ls -- *.deb) > "$stamp"
  rm -rf "$apt/debs" "$apt/state/lists" "$apt/cache"   # ~190 MB, needed again only to refresh
  say "engine 26: $(tr '\n' ' ' < "$stamp")unpacked in $prefix ($(($(date +%s) - t0))s)"
}

# ENGINE_DOCKERD=(...): the dockerd command line. Both engines: the default socket, no iptables
# (the Neutron agent owns the host's firewall), the default bridge docker0.
engine_dockerd_argv() {
  local common=(--iptables=false --ip6tables=false -H unix:///var/run/docker.sock)
  case "$(engine_version)" in
    20.10) ENGINE_DOCKERD=(/usr/sbin/dockerd "${common[@]}") ;;
    26)
      local prefix; prefix=$(engine_root)/root
      # dockerd finds containerd and the shim, and containerd finds runc, through PATH: the
      # private prefix comes first, bookworm's runc (/usr/sbin) after it.
      ENGINE_DOCKERD=(env "PATH=$prefix/usr/sbin:$prefix/usr/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        "$prefix/usr/sbin/dockerd" "${common[@]}"
        --data-root /var/lib/docker-26 --exec-root /var/run/docker-26 --pidfile /var/run/docker-26.pid)
      ;;
  esac
}

# The Server version of whatever dockerd answers on the socket, e.g. "26.1.5+dfsg1" ("" if none).
engine_running_version() {
  /usr/bin/docker version --format '{{.Server.Version}}' 2>/dev/null || true
}

# True when the running daemon is the engine asked for (major version match).
engine_is_wanted() {
  local running; running=$(engine_running_version)
  [ -n "$running" ] && [[ $running == "$(engine_version)".* || $running == "$(engine_version)" ]]
}

# Before spawning: our dockerd running another engine is stopped, so spawn starts the wanted one.
engine_switch() {
  running dockerd || return 0
  engine_is_wanted && return 0
  say "dockerd runs engine '$(engine_running_version)', want $(engine_version): restarting it"
  stop_one dockerd 60
}

# After dockerd answers: a daemon we did not start (spawn reuses it) may be another engine.
engine_check() {
  engine_is_wanted || die "the dockerd on /var/run/docker.sock is '$(engine_running_version)', \
not engine $(engine_version) (KURYR_ENV_DOCKER): stop it first"
  say "dockerd: engine $(engine_running_version)"
}
