#!/usr/bin/env bash
# Installs tls-echod from this source tree, with its systemd units and a default config.
# Run it again to upgrade: it is idempotent, and it never overwrites /etc/tls-echod/config.json.
# See docs/systemd.md. `scripts/install.sh --help` lists the options.

set -euo pipefail
umask 022 # the service runs as a DynamicUser: everything installed must be world-readable

usage() {
  cat <<'EOF'
Usage: scripts/install.sh [options]

  --prefix DIR      install the program under DIR/lib/tls-echod and DIR/bin (default /usr/local)
  --dest-dir DIR    stage the whole install under DIR (like DESTDIR) for packaging or tests;
                    systemctl is never run then
  --no-systemd      install only the program: no units, no /etc/tls-echod/config.json
  --no-build        use the existing dist/ and node_modules/ instead of `npm ci && npm run build`;
                    production dependencies are copied from node_modules/ (works offline)
  --uninstall       stop and disable the units, remove what this script installed; keeps
                    /etc/tls-echod/config.json and the state in /var/lib/tls-echod
  -h, --help        show this help

Environment: NODE=/path/to/node picks the node binary the wrapper runs (default: `command -v node`).
EOF
}

die() {
  echo "install.sh: $*" >&2
  exit 1
}
say() { echo "install.sh: $*"; }

prefix=/usr/local
dest_dir=
uninstall=0
with_systemd=1
build=1

need_arg() { [[ $# -ge 2 && -n $2 ]] || die "$1 needs a value (see --help)"; }

while [[ $# -gt 0 ]]; do
  case $1 in
    --prefix) need_arg "$@"; prefix=$2; shift 2 ;;
    --prefix=*) prefix=${1#*=}; shift ;;
    --dest-dir) need_arg "$@"; dest_dir=$2; shift 2 ;;
    --dest-dir=*) dest_dir=${1#*=}; shift ;;
    --no-systemd) with_systemd=0; shift ;;
    --no-build) build=0; shift ;;
    --uninstall) uninstall=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; echo >&2; die "unknown option $1" ;;
  esac
done

[[ $prefix == /* ]] || die "--prefix must be an absolute path, got '$prefix'"
# The prefix goes into a sed expression and a quoted shell line: keep it to plain path characters.
[[ $prefix =~ ^[A-Za-z0-9._/+-]+$ ]] || die "--prefix '$prefix': use only letters, digits and . _ / + -"
prefix=${prefix%/}
root=
if [[ -n $dest_dir ]]; then
  mkdir -p -- "$dest_dir"
  root=$(cd -- "$dest_dir" && pwd)
  root=${root%/}
fi

src_dir=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
lib_dir=$prefix/lib/tls-echod
bin_file=$prefix/bin/tls-echod
unit_dir=/etc/systemd/system
conf_file=/etc/tls-echod/config.json
units=(tls-echod.socket tls-echod.service)
# The wrapper says who wrote it, so --uninstall never deletes someone else's tls-echod.
marker="Installed by tls-echod's scripts/install.sh"

# systemctl only for a live install on a host where systemd is the init system.
systemd_running=0
[[ -z $root && -d /run/systemd/system ]] && systemd_running=1

if [[ -z $root && $EUID -ne 0 ]]; then
  if [[ $with_systemd -eq 1 ]]; then
    die "installing units into $unit_dir needs root (or use --no-systemd --prefix \$HOME/.local)"
  fi
fi

do_uninstall() {
  if [[ $with_systemd -eq 1 ]]; then
    if [[ $systemd_running -eq 1 ]]; then
      for unit in "${units[@]}"; do
        if [[ -e $unit_dir/$unit ]]; then
          systemctl disable --now "$unit" || say "could not stop/disable $unit (continuing)"
        fi
      done
    fi
    for unit in "${units[@]}"; do rm -f -- "$root$unit_dir/$unit"; done
    if [[ $systemd_running -eq 1 ]]; then systemctl daemon-reload; fi
  fi
  if [[ -f $root$bin_file ]] && grep -qF -- "$marker" "$root$bin_file"; then
    rm -f -- "$root$bin_file"
  elif [[ -e $root$bin_file ]]; then
    say "left $root$bin_file alone: it was not written by this script"
  fi
  rm -rf -- "$root$lib_dir" "$root$lib_dir.new"
  say "removed tls-echod from $root$prefix${root:+ (staged)}"
  say "kept $conf_file and the state directory /var/lib/tls-echod (/var/lib/private/tls-echod:"
  say "  the generated CA and certificates); delete them yourself to forget them"
}

find_node() {
  local node=${NODE:-}
  if [[ -z $node ]]; then node=$(command -v node) || die "node not found in PATH (install Node >= 20, or set NODE=/path/to/node)"; fi
  [[ $node == /* ]] || node=$(command -v -- "$node") || die "NODE=$node: not found"
  [[ $node != *"'"* ]] || die "$node: a node path with a quote in it is not supported"
  "$node" -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' ||
    die "$node is Node $("$node" --version); tls-echod needs Node >= 20"
  case $node in
    /home/* | /root/* | /run/user/*)
      say "warning: $node is under a home directory, which the unit hides (ProtectHome=yes);" >&2
      say "  the service will not start: install Node system-wide or set NODE= to one" >&2
      ;;
  esac
  echo "$node"
}

do_install() {
  local node
  node=$(find_node)

  if [[ $build -eq 1 ]]; then
    say "building in $src_dir (npm ci && npm run build)"
    (cd -- "$src_dir" && npm ci --ignore-scripts --no-audit --no-fund && npm run build)
  fi
  [[ -f $src_dir/dist/src/cli.js ]] || die "$src_dir/dist/src/cli.js is missing: build first (npm run build) or drop --no-build"

  # Stage the program next to its final place, then swap it in: a failed npm ci leaves the
  # installed version untouched.
  local staged=$root$lib_dir.new
  rm -rf -- "$staged"
  mkdir -p -- "$staged/dist"
  cp -- "$src_dir/package.json" "$src_dir/package-lock.json" "$staged/"
  cp -R -- "$src_dir/dist/src" "$staged/dist/src"
  find "$staged/dist" -name '*.map' -delete # they point at TypeScript sources not shipped
  if [[ $build -eq 1 ]]; then
    (cd -- "$staged" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund)
  else
    [[ -d $src_dir/node_modules ]] || die "$src_dir/node_modules is missing: run npm ci, or drop --no-build"
    cp -R -- "$src_dir/node_modules" "$staged/node_modules"
    (cd -- "$staged" && npm prune --omit=dev --ignore-scripts --offline --no-audit --no-fund)
  fi
  rm -rf -- "$root$lib_dir"
  mv -- "$staged" "$root$lib_dir"

  # A wrapper, not a symlink: it pins the node binary (systemd's PATH may not have it) and
  # execs, so node is the service's main PID (Type=notify, WATCHDOG_PID, kill -HUP $MAINPID).
  mkdir -p -- "$root$prefix/bin"
  cat >"$root$bin_file.tmp" <<EOF
#!/bin/sh
# $marker; rerun it to upgrade.
exec '$node' '$lib_dir/dist/src/cli.js' "\$@"
EOF
  chmod 0755 -- "$root$bin_file.tmp"
  mv -f -- "$root$bin_file.tmp" "$root$bin_file"
  say "installed $bin_file -> $lib_dir (node: $node)"

  [[ $with_systemd -eq 1 ]] || return 0

  mkdir -p -- "$root$unit_dir"
  sed "s|^ExecStart=/usr/local/bin/tls-echod |ExecStart=$bin_file |" \
    "$src_dir/systemd/tls-echod.service" >"$root$unit_dir/tls-echod.service.tmp"
  grep -q "^ExecStart=$bin_file " "$root$unit_dir/tls-echod.service.tmp" || die "could not set ExecStart= in tls-echod.service"
  install -m 0644 -- "$src_dir/systemd/tls-echod.socket" "$root$unit_dir/tls-echod.socket"
  chmod 0644 -- "$root$unit_dir/tls-echod.service.tmp"
  mv -f -- "$root$unit_dir/tls-echod.service.tmp" "$root$unit_dir/tls-echod.service"
  say "installed $unit_dir/tls-echod.socket and tls-echod.service"

  if [[ -e $root$conf_file ]]; then
    say "kept the existing $conf_file"
  else
    # 0644 in a 0755 directory: the DynamicUser that reads it is not root.
    install -d -m 0755 -- "$root$(dirname -- "$conf_file")"
    install -m 0644 -- "$src_dir/systemd/config.json" "$root$conf_file"
    say "installed the default $conf_file"
  fi

  if [[ $systemd_running -eq 1 ]]; then
    systemctl daemon-reload
    say "next: systemctl enable --now tls-echod.socket  (an upgrade: systemctl try-restart tls-echod)"
  elif [[ -z $root ]]; then
    say "systemd is not running here: units installed but not loaded"
  fi
}

if [[ $uninstall -eq 1 ]]; then do_uninstall; else do_install; fi
