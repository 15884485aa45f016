#!/bin/sh
# Install trioserver as a systemd service: the executable, the unit and (first time only) a
# config. Run from the repository root after building dist/trioserver; see --help.
set -eu

usage() {
    cat <<'EOF'
Usage: packaging/install.sh [--server-name NAME] [--binary PATH] [--root DIR] [--start]

Installs
  PATH (default ./dist/trioserver)     as /usr/local/bin/trioserver (mode 0755)
  packaging/trioserver.service         as /etc/systemd/system/trioserver.service
  a new config, unless one exists      as /etc/trioserver/config.toml (mode 0640), made by
                                       `trioserver generate-config --server-name NAME` with
                                       data_dir = "/var/lib/trioserver"
then runs `systemctl daemon-reload`. An existing config is never overwritten.

Options
  --server-name NAME  the server name (the domain in @user:NAME); required when the config
                      does not exist yet, ignored otherwise
  --binary PATH       the trioserver executable to install (default ./dist/trioserver)
  --root DIR          install under DIR instead of / (staging, packaging, tests); no root
                      needed, systemctl is not run. Default: $DESTDIR, else /
  --start             also `systemctl enable` and (re)start the service
  -h, --help          show this help
EOF
}

die() {
    echo "install.sh: $*" >&2
    exit 1
}

server_name=""
binary="./dist/trioserver"
root="${DESTDIR:-/}"
start=no
while [ $# -gt 0 ]; do
    case "$1" in
        --server-name) [ $# -ge 2 ] || die "--server-name needs a value"; server_name=$2; shift 2 ;;
        --server-name=*) server_name=${1#*=}; shift ;;
        --binary) [ $# -ge 2 ] || die "--binary needs a value"; binary=$2; shift 2 ;;
        --binary=*) binary=${1#*=}; shift ;;
        --root) [ $# -ge 2 ] || die "--root needs a value"; root=$2; shift 2 ;;
        --root=*) root=${1#*=}; shift ;;
        --start) start=yes; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

[ -n "$root" ] || root=/
# "/", "//" and "/./" all mean the real system.
case "$(cd "$root" 2>/dev/null && pwd -P || echo "$root")" in
    /) real_system=yes ;;
    *) real_system=no ;;
esac
if [ "$real_system" = yes ]; then
    [ "$(id -u)" -eq 0 ] ||
        die "installing into / needs root: run it with sudo, or stage it with --root DIR"
    prefix=""
else
    [ "$start" = no ] || die "--start cannot be used with --root (nothing runs from DIR)"
    [ -d "$root" ] || die "--root $root: no such directory"
    prefix=${root%/}
fi

unit_source="$(dirname "$0")/trioserver.service"
[ -f "$unit_source" ] || die "cannot find the unit file $unit_source"
[ -f "$binary" ] && [ -x "$binary" ] ||
    die "no executable at $binary (build it first, or pass --binary PATH)"

bin_dir="$prefix/usr/local/bin"
unit_dir="$prefix/etc/systemd/system"
config_dir="$prefix/etc/trioserver"
config="$config_dir/config.toml"
[ -e "$config" ] || [ -n "$server_name" ] ||
    die "$config does not exist yet: give --server-name NAME (e.g. example.org)"

tmp_files=""
cleanup() {
    # shellcheck disable=SC2086 # the list is of paths this script made, without spaces
    [ -z "$tmp_files" ] || rm -f $tmp_files
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

# Copy to a temporary name beside the target, then rename: a running service keeps its old
# executable (no "Text file busy"), and nobody ever sees a half-written file.
install_file() {  # MODE SOURCE TARGET
    tmp="$3.install.$$"
    tmp_files="$tmp_files $tmp"
    install -m "$1" "$2" "$tmp"
    mv -f "$tmp" "$3"
}

install -d -m 0755 "$bin_dir" "$unit_dir" "$config_dir"
install_file 0755 "$binary" "$bin_dir/trioserver"
echo "installed $bin_dir/trioserver"
install_file 0644 "$unit_source" "$unit_dir/trioserver.service"
echo "installed $unit_dir/trioserver.service"

if [ -e "$config" ]; then
    echo "kept the existing $config"
else
    tmp="$config.install.$$"
    tmp_files="$tmp_files $tmp"
    # 0640 from the start: the config may hold registration tokens.
    (umask 0137 && "$binary" generate-config --server-name "$server_name" >"$tmp") ||
        die "generate-config failed"
    tmp2="$tmp.data_dir"
    tmp_files="$tmp_files $tmp2"
    # Replace the top-level data_dir (before the first [section]); add it if there is none.
    (umask 0137 && awk -v line='data_dir = "/var/lib/trioserver"' '
        /^[[:space:]]*\[/ && !done { print line; done = 1 }
        /^data_dir[[:space:]]*=/ && !done { print line; done = 1; next }
        { print }
        END { if (!done) print line }
    ' "$tmp" >"$tmp2")
    chmod 0640 "$tmp2"
    mv -f "$tmp2" "$config"
    echo "wrote $config (server name $server_name, data in /var/lib/trioserver)"
fi

if [ "$real_system" = no ]; then
    echo "staged under $root; systemctl was not run"
    exit 0
fi
if ! command -v systemctl >/dev/null 2>&1 || [ ! -d /run/systemd/system ]; then
    echo "systemd is not running here; run 'systemctl daemon-reload' on the target system"
    exit 0
fi
systemctl daemon-reload
if [ "$start" = yes ]; then
    systemctl enable trioserver
    systemctl restart trioserver
    echo "trioserver is running: systemctl status trioserver; journalctl -u trioserver"
else
    echo "next: review $config, then: systemctl enable --now trioserver"
    echo "(after an upgrade of a running service: systemctl restart trioserver)"
fi
