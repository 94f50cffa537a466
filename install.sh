#!/bin/bash
# install.sh: set up a Debian, Ubuntu or Raspbian server for piku in Rust.
#
# Installs the Debian packages piku needs, builds and installs the tools, and
# sets up the piku user, nginx's default site, the sudo rule that lets piku
# reload nginx, and the uWSGI emperor. Safe to run again: what is already in
# place is left alone, and nothing is restarted unless its configuration
# changed. Run it as root, from anywhere.
set -eu

usage() {
    cat <<'EOF'
Usage: sudo ./install.sh [--key FILE]... [--with postgres,redis] [--demo]
       sudo ./install.sh --uninstall [--purge]
       ./install.sh --client

Set up this machine as a piku server (Debian 12 or newer, Ubuntu, Raspbian).

  --key FILE   allow this ssh public key to push apps (repeatable)
  --with LIST  also install the add-on servers apps can get databases from
               (addons:create): postgres (Debian's postgresql, and the sudo
               rule for piku-pgadmin), redis (Debian's redis-server)
  --demo       then deploy share/examples/hello with git push over ssh,
               as a user would, and wait until it answers through nginx
  --uninstall  remove what install.sh installed (tools, hooks, systemd units,
               the sudo rule, nginx's piku site) and stop the uWSGI emperor;
               the piku user's apps, data and config stay in ~piku, and
               install.sh brings every app back
  --purge      with --uninstall: remove the piku user and ~piku too
  --client     only install the client script `piku` for your own machine,
               into $PIKU_CLIENT_DIR (default ~/.local/bin); no root needed
  --help       this text

To update: git pull, then sudo ./install.sh again (apps keep serving).
EOF
}

step() { echo "-----> $*"; }
note() { echo "       $*"; }
die() { echo " !     $*" >&2; exit 1; }

# Options. Key files are resolved before we change directory.
keys=()
demo=false
client=false
with_postgres=false
with_redis=false
uninstall=false
purge=false
while [ $# -gt 0 ]; do
    case $1 in
        --key|--key=*)
            if [ "$1" = --key ]; then
                [ $# -ge 2 ] || { echo "install.sh: --key needs a public key file" >&2; usage >&2; exit 2; }
                file=$2; shift
            else
                file=${1#--key=}
            fi
            [ -r "$file" ] || die "cannot read the public key file '$file'"
            keys+=("$(readlink -f "$file")") ;;
        --with|--with=*)
            if [ "$1" = --with ]; then
                [ $# -ge 2 ] || { echo "install.sh: --with needs a list, e.g. --with postgres,redis" >&2; usage >&2; exit 2; }
                list=$2; shift
            else
                list=${1#--with=}
            fi
            for w in ${list//,/ }; do
                case $w in
                    postgres|postgresql) with_postgres=true ;;
                    redis) with_redis=true ;;
                    *) echo "install.sh: --with: unknown add-on '$w' (postgres, redis)" >&2; exit 2 ;;
                esac
            done ;;
        --demo) demo=true ;;
        --client) client=true ;;
        --uninstall) uninstall=true ;;
        --purge) purge=true ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

# The client: one POSIX sh script, for a developer's machine.
if $client; then
    dir=${PIKU_CLIENT_DIR:-$HOME/.local/bin}
    mkdir -p "$dir"
    install -m 755 "$(dirname "$(readlink -f "$0")")/share/client/piku" "$dir/piku"
    step "Installed the piku client as $dir/piku"
    case ":$PATH:" in *":$dir:"*) ;; *) note "add $dir to your PATH" ;; esac
    note "in an app's repository: git remote add piku piku@<server>:<app>; piku help"
    exit 0
fi

[ "$(id -u)" -eq 0 ] || die "install.sh must run as root (it installs packages and creates the piku user): sudo $0 $*"
command -v apt-get >/dev/null || die "install.sh needs a Debian-based system (Debian, Ubuntu, Raspbian) with apt-get"
cd "$(dirname "$(readlink -f "$0")")"

PIKU_HOME=/home/piku
PIKU_ROOT=$PIKU_HOME/.piku
BIN_DIR=/usr/local/bin
HOOKS_DIR=/usr/local/share/piku/hooks
UV_DIR=/usr/local/lib/piku/uv
TOOLS="piku piku-receive piku-build piku-config piku-uwsgi piku-nginx piku-nginx-install piku-addons piku-pgadmin"
PACKAGES="git openssh-server openssh-client nginx uwsgi uwsgi-plugin-python3 python3
    python3-virtualenv virtualenv python3-venv python3-pip sudo curl ca-certificates
    util-linux build-essential pkg-config openssl lego"
if $with_postgres; then PACKAGES="$PACKAGES postgresql"; fi
if $with_redis; then PACKAGES="$PACKAGES redis-server"; fi
export DEBIAN_FRONTEND=noninteractive

# install_file MODE SRC DST: copy SRC to DST unless it is already the same.
# Returns 0 when DST changed, 1 when it was up to date.
install_file() {
    if cmp -s "$2" "$3"; then return 1; fi
    install -D -m "$1" "$2" "$3"
    note "installed $3"
}

# alive PIDFILE WORD: the process in PIDFILE runs, and its command line has WORD.
alive() {
    local pid
    pid=$(cat "$1" 2>/dev/null) || return 1
    case $pid in ''|*[!0-9]*) return 1 ;; esac
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$2"
}

# as_piku CMD...: run CMD as the piku user, in its home, with a clean environment.
as_piku() {
    (cd "$PIKU_HOME" && runuser -u piku -- env -i HOME="$PIKU_HOME" USER=piku LOGNAME=piku \
        SHELL=/bin/bash PATH="$BIN_DIR:/usr/bin:/bin:/usr/sbin:/sbin" LANG=C.UTF-8 "$@")
}

# stop_emperor: stop the uWSGI emperor started without systemd (its workers
# stop with it), waiting at most 10 s.
stop_emperor() {
    local pidfile=$PIKU_ROOT/uwsgi/emperor.pid
    alive "$pidfile" uwsgi || return 0
    kill -INT "$(cat "$pidfile")"
    for _ in $(seq 100); do alive "$pidfile" uwsgi || break; sleep 0.1; done
    ! alive "$pidfile" uwsgi || die "the uWSGI emperor (pid $(cat "$pidfile")) did not stop within 10 s"
    # Its vassals leave as it does: wait for the last of the piku user's workers.
    for _ in $(seq 100); do pgrep -u piku -f -i uwsgi >/dev/null || break; sleep 0.1; done
    ! pgrep -u piku -f -i uwsgi >/dev/null || note "some of piku's uWSGI workers are still stopping: $(pgrep -u piku -f -i uwsgi | paste -sd' ')"
}

if $purge && ! $uninstall; then
    echo "install.sh: --purge goes with --uninstall" >&2; usage >&2; exit 2
fi
if $uninstall; then
    step "Uninstalling piku in Rust"
    if [ -d /run/systemd/system ]; then
        systemctl disable --now uwsgi-piku.service piku-nginx.path piku-certs.timer piku-addons-backup.timer 2>/dev/null || true
        for u in uwsgi-piku.service piku-nginx.path piku-nginx.service piku-certs.service piku-certs.timer \
                piku-addons-backup.service piku-addons-backup.timer; do
            [ -e "/etc/systemd/system/$u" ] && rm -f "/etc/systemd/system/$u" && note "removed /etc/systemd/system/$u"
        done
        systemctl daemon-reload
    else
        stop_emperor
    fi
    note "stopped the uWSGI emperor and the apps' workers"
    for t in $TOOLS; do [ -e "$BIN_DIR/$t" ] && rm -f "$BIN_DIR/$t" && note "removed $BIN_DIR/$t"; done
    if [ -L "$BIN_DIR/uv" ] && [ "$(readlink "$BIN_DIR/uv")" = "$UV_DIR/bin/uv" ]; then rm -f "$BIN_DIR/uv"; fi
    for d in "$(dirname "$HOOKS_DIR")" "$(dirname "$UV_DIR")"; do
        [ -d "$d" ] && rm -rf "$d" && note "removed $d"
    done
    [ -e /etc/sudoers.d/piku ] && rm -f /etc/sudoers.d/piku && note "removed /etc/sudoers.d/piku"
    # Root's copies of the apps' blocks, certificates and keys, and nginx's caches.
    for d in /var/lib/piku /var/cache/piku; do
        [ -d "$d" ] && rm -rf "$d" && note "removed $d"
    done
    if $purge && [ -d /etc/piku ]; then rm -rf /etc/piku && note "removed /etc/piku"; fi
    for f in /etc/sudoers.d/piku-postgres /etc/cron.d/piku-addons; do
        [ -e "$f" ] && rm -f "$f" && note "removed $f"
    done
    if [ -e /etc/nginx/sites-available/piku ] || [ -L /etc/nginx/sites-enabled/piku ]; then
        rm -f /etc/nginx/sites-enabled/piku /etc/nginx/sites-available/piku
        note "removed nginx's piku site (the apps no longer answer)"
        if [ -f /etc/nginx/sites-available/default ] && [ ! -e /etc/nginx/sites-enabled/default ]; then
            ln -s /etc/nginx/sites-available/default /etc/nginx/sites-enabled/default
            note "enabled Debian's default site again"
        fi
        if nginx -t -q 2>/dev/null && { alive /run/nginx.pid nginx || [ -d /run/systemd/system ]; }; then
            nginx -s reload 2>/dev/null || systemctl reload nginx 2>/dev/null || true
        fi
    fi
    if $purge; then
        pkill -KILL -u piku 2>/dev/null || true
        if id piku >/dev/null 2>&1; then userdel -r piku 2>/dev/null || userdel piku; fi
        rm -rf "$PIKU_HOME"
        note "removed the piku user and $PIKU_HOME (apps, data, config)"
    elif [ -d "$PIKU_ROOT" ]; then
        apps=$(ls "$PIKU_ROOT/apps" 2>/dev/null | paste -sd' ')
        note "kept the piku user and $PIKU_HOME: apps ${apps:-(none)}, their data and config"
        note "sudo ./install.sh brings them back; --uninstall --purge removes them"
    fi
    note "left the Debian packages installed (apt-get remove them if you wish)"
    exit 0
fi

step "Installing Debian packages"
missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    note "missing:$missing"
    apt-get update -q
    # shellcheck disable=SC2086 # one word per package
    apt-get install -y -q --no-install-recommends $missing
else
    note "all present"
fi

# uv, for Python apps with a pyproject.toml (piku-build runs `uv sync`): not
# packaged by Debian 12, whose pip refuses to install system-wide ("externally
# managed"), so it goes into a virtualenv of its own under /usr/local/lib/piku,
# linked onto every user's PATH. Optional: without PyPI, uv apps get a clear
# error at deploy time. PIKU_NO_UV=1 leaves it out.
if [ "${PIKU_NO_UV:-}" != 1 ] && ! command -v uv >/dev/null; then
    step "Installing uv (from PyPI) into $UV_DIR"
    if /usr/bin/python3 -m venv "$UV_DIR" && "$UV_DIR/bin/pip" install -q --disable-pip-version-check uv; then
        ln -sfn "$UV_DIR/bin/uv" "$BIN_DIR/uv"
        note "$("$BIN_DIR/uv" --version)"
    else
        rm -rf "$UV_DIR"
        note "could not install uv (is PyPI reachable?); uv apps will not build until it is installed"
    fi
fi

# Rust to build piku with, in this order: one on the PATH (rustup's in
# ~/.cargo included) that is 1.89 or newer; else Debian's cargo-web and
# rustc-web (Debian 12: bookworm-security and bookworm-updates, every
# architecture, Raspberry Pi OS included), installed with apt; else an error
# naming both ways. Under sudo, the invoking user's rustup is used as that user.
step "Choosing a Rust to build the tools with"
builder=()
for dir in "${HOME:-/root}/.cargo/bin" /root/.cargo/bin; do
    if ! command -v cargo >/dev/null && [ -x "$dir/cargo" ]; then PATH="$dir:$PATH"; fi
done
if ! command -v cargo >/dev/null && [ -n "${SUDO_USER:-}" ]; then
    user_home=$(getent passwd "$SUDO_USER" | cut -d: -f6)
    if [ -x "$user_home/.cargo/bin/cargo" ]; then
        PATH="$user_home/.cargo/bin:$PATH"
        builder=(runuser -u "$SUDO_USER" -- env HOME="$user_home" PATH="$PATH")
        note "building as $SUDO_USER, with the Rust in $user_home/.cargo"
    fi
fi
rust_version() { "${builder[@]}" rustc "$@" --version 2>/dev/null | awk '{print $2}'; }
new_enough() { [ -n "$1" ] && [ "$(printf '%s\n1.89.0\n' "$1" | sort -V | head -n1)" = 1.89.0 ]; }
# Debian's old cargo (for Rust apps) may be first on the PATH: prefer rustup's.
if ! new_enough "$(rust_version)"; then
    for dir in "${HOME:-/root}/.cargo/bin" /root/.cargo/bin; do
        if [ -x "$dir/cargo" ]; then PATH="$dir:$PATH"; break; fi
    done
fi
toolchain=""
if ! new_enough "$(rust_version)" && command -v rustup >/dev/null; then
    note "rustup's default Rust is older than 1.89: installing its stable toolchain"
    "${builder[@]}" rustup toolchain install stable --profile minimal && toolchain=+stable
fi
if ! new_enough "$(rust_version $toolchain)"; then
    candidate=$(apt-cache policy cargo-web 2>/dev/null | awk '/Candidate:/ {print $2}')
    if new_enough "${candidate%%+*}"; then
        note "no Rust 1.89 or newer here: installing Debian's cargo-web and rustc-web ${candidate%%+*} with apt"
        note "(they replace Debian's older cargo and rustc packages, and serve Rust apps too)"
        builder=(); toolchain=""
        apt-get install -y -q --no-install-recommends cargo-web rustc-web
        PATH="/usr/bin:$PATH"; hash -r
    fi
fi
version=$(rust_version $toolchain)
new_enough "$version" || die "piku needs Rust 1.89 or newer to build (found: ${version:-none}). Either install Debian's: apt-get install cargo-web rustc-web (Debian 12 with bookworm-security or bookworm-updates), or rustup from https://rustup.rs; then run install.sh again."
note "rustc $version ($(command -v rustc))"

# The build profile by the memory this machine has: fat LTO in one codegen
# unit makes the smallest tools but takes the most memory; below 2 GiB
# (a Raspberry Pi with 1 GB) the "small-machine" profile builds one crate at
# a time with thin LTO (README: figures for both). PIKU_BUILD_PROFILE=release
# or small-machine chooses by hand.
mem_kib=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
profile=${PIKU_BUILD_PROFILE:-}
if [ -z "$profile" ]; then
    if [ "${mem_kib:-0}" -lt $((2 * 1024 * 1024)) ]; then profile=small-machine; else profile=release; fi
fi
build=(cargo $toolchain build --locked --profile "$profile")
if [ "$profile" = small-machine ]; then
    note "$((mem_kib / 1024)) MiB of memory: the small-machine profile (one job at a time, thin LTO)"
    build+=(--jobs 1)
fi
step "Building the tools (${build[*]})"
"${builder[@]}" "${build[@]}"

# The tools are swapped while apps keep serving: each file is replaced by a
# rename (never half-written), and under an exclusive lock that every deploy
# chain holds shared (hooks/post-receive), so a push in flight finishes with
# the old tools and one that starts after uses the new ones, never a mix.
step "Installing the tools into $BIN_DIR and the hooks into $HOOKS_DIR"
mkdir -p "$HOOKS_DIR"
lock=$HOOKS_DIR/../update.lock
touch "$lock" && chmod 0644 "$lock"
exec 7<"$lock"
if ! flock -n -x 7; then
    note "waiting for deploys in flight to finish (at most 10 minutes)"
    flock -w 600 -x 7 || die "deploys are still running after 10 minutes; run install.sh again later"
fi
swap_file() { # MODE SRC DST: replace DST by SRC with a rename, unless the same
    if cmp -s "$2" "$3"; then return 0; fi
    install -D -m "$1" "$2" "$3.new" && mv -f "$3.new" "$3"
    note "installed $3"
}
for t in $TOOLS; do swap_file 755 "target/$profile/$t" "$BIN_DIR/$t"; done
for h in hooks/*; do swap_file 755 "$h" "$HOOKS_DIR/$(basename "$h")"; done
exec 7<&-

step "Setting up the piku user"
if ! id piku >/dev/null 2>&1; then
    useradd --home-dir "$PIKU_HOME" --create-home --gid www-data --shell /bin/bash \
        --comment "piku git push deployments" piku
    note "created user piku (group www-data)"
fi
# Keys only, no password; '*' rather than useradd's '!' (locked), which sshd
# refuses when it runs without PAM.
case $(getent shadow piku | cut -d: -f2) in ''|'!'*) usermod -p '*' piku ;; esac
mkdir -p "$PIKU_HOME"
chown piku:www-data "$PIKU_HOME"
chmod 0750 "$PIKU_HOME"    # nginx's www-data workers may reach static files
ini=$PIKU_ROOT/uwsgi/uwsgi.ini
ini_before=$(cat "$ini" 2>/dev/null || true)
as_piku "$BIN_DIR/piku" setup
ini_changed=false
[ "$ini_before" = "$(cat "$ini")" ] || ini_changed=true

step "Writing $PIKU_ROOT/settings"
settings=$PIKU_ROOT/settings
header="# piku's server-wide settings, K=V. install.sh sets NGINX_RELOAD, NGINX_MIME_TYPES and NGINX_BIN; other lines are kept."
tmp=$(mktemp "$PIKU_ROOT/.settings.XXXXXX")
{
    echo "$header"
    echo "NGINX_RELOAD=sudo -n $BIN_DIR/piku-nginx-install"
    echo "NGINX_MIME_TYPES=/etc/nginx/mime.types"
    echo "NGINX_BIN=/usr/sbin/nginx"    # not on the PATH of an ssh session
    if [ -f "$settings" ]; then
        grep -v -e "^# piku's server-wide settings" -e '^NGINX_RELOAD=' -e '^NGINX_MIME_TYPES=' -e '^NGINX_BIN=' "$settings" || true
    fi
} >"$tmp"
if cmp -s "$tmp" "$settings"; then
    rm -f "$tmp"; note "unchanged"
else
    chown piku:www-data "$tmp"; chmod 0644 "$tmp"; mv "$tmp" "$settings"
fi

step "Root's nginx installer (/etc/piku/nginx-install.conf, /var/lib/piku/nginx)"
# Root's nginx reads the apps' blocks from /var/lib/piku/nginx, where only
# piku-nginx-install (as root) writes, after checking them; never from
# ~piku/.piku/nginx, which every app's code can write. The settings file is
# the server owner's: written once, then left as they edit it (RAW_INCLUDE).
install -d -m 0755 -o root -g root /etc/piku /var/lib/piku /var/lib/piku/nginx /var/cache/piku /var/cache/piku/nginx
if [ ! -f /etc/piku/nginx-install.conf ]; then
    install -m 0644 -o root -g root share/nginx/install.conf /etc/piku/nginx-install.conf
    note "installed /etc/piku/nginx-install.conf"
fi
# Before the default site includes that directory (below), it holds the apps'
# blocks: an update from a version that included ~piku/.piku/nginx serves on.
if alive /run/nginx.pid nginx; then
    "$BIN_DIR/piku-nginx-install" >/dev/null 2>&1 || true
fi

step "Allowing piku to run the installer, and nothing else, as root (/etc/sudoers.d/piku)"
if ! cmp -s share/sudoers.d-piku /etc/sudoers.d/piku; then
    # sudo skips files whose names contain a dot, so piku.new is never read half-made.
    install -m 0440 -o root -g root share/sudoers.d-piku /etc/sudoers.d/piku.new
    visudo -cqf /etc/sudoers.d/piku.new || { rm -f /etc/sudoers.d/piku.new; die "share/sudoers.d-piku does not pass visudo -c"; }
    mv /etc/sudoers.d/piku.new /etc/sudoers.d/piku
fi
as_piku sudo -n -l "$BIN_DIR/piku-nginx-install" >/dev/null ||
    die "the piku user cannot run 'sudo -n $BIN_DIR/piku-nginx-install'; check that /etc/sudoers includes /etc/sudoers.d"

if $with_postgres; then
    step "Allowing piku to create apps' databases (/etc/sudoers.d/piku-postgres)"
    if ! cmp -s share/sudoers.d-piku-postgres /etc/sudoers.d/piku-postgres; then
        install -m 0440 -o root -g root share/sudoers.d-piku-postgres /etc/sudoers.d/piku-postgres.new
        visudo -cqf /etc/sudoers.d/piku-postgres.new || { rm -f /etc/sudoers.d/piku-postgres.new; die "share/sudoers.d-piku-postgres does not pass visudo -c"; }
        mv /etc/sudoers.d/piku-postgres.new /etc/sudoers.d/piku-postgres
    fi
    if [ -d /run/systemd/system ]; then
        systemctl enable --now postgresql
    else
        # No systemd: start the clusters that are down (Debian's pg_ctlcluster).
        pg_lsclusters --no-header 2>/dev/null | while read -r ver name _ status _; do
            if [ "$status" != online ]; then
                pg_ctlcluster "$ver" "$name" start || die "PostgreSQL $ver/$name did not start (see above)"
                note "started PostgreSQL $ver/$name"
            fi
        done
    fi
    note "addons:create <app> postgres makes a role and a database piku_<app> (port 5432; ADDONS_PG_PORT in $PIKU_ROOT/settings for another)"
fi
if $with_redis; then
    note "Redis: each app's own redis-server runs under the uWSGI emperor (addons:create <app> redis);"
    note "Debian's system-wide redis-server service is not used by piku (systemctl disable --now redis-server frees its memory)"
fi

step "Installing nginx's default site (/etc/nginx/sites-available/piku)"
site=/etc/nginx/sites-available/piku
site_new=$(mktemp)
if grep -q . /proc/net/if_inet6 2>/dev/null; then
    cp share/nginx/default-site.conf "$site_new"
else
    note "no IPv6 on this machine: leaving out the [::] listeners"
    grep -v 'listen \[::\]' share/nginx/default-site.conf >"$site_new"
fi
nginx_changed=false
if ! cmp -s "$site_new" "$site"; then
    [ -f "$site" ] && cp -p "$site" "$site.old"
    install -m 0644 "$site_new" "$site"
    nginx_changed=true
fi
rm -f "$site_new"
if [ "$(readlink /etc/nginx/sites-enabled/piku)" != "$site" ]; then
    ln -sfn "$site" /etc/nginx/sites-enabled/piku
    nginx_changed=true
fi
if [ -L /etc/nginx/sites-enabled/default ]; then
    rm -f /etc/nginx/sites-enabled/default
    note "disabled Debian's default site (it claims the same default server)"
    nginx_changed=true
fi
if ! nginx -t -q; then
    if [ -f "$site.old" ]; then mv "$site.old" "$site"; else rm -f /etc/nginx/sites-enabled/piku; fi
    die "nginx -t rejected the configuration (see above); the previous default site was put back"
fi
rm -f "$site.old"

if [ -d /run/systemd/system ]; then
    step "Installing and starting the systemd units"
    units_changed=false
    for u in uwsgi-piku.service piku-nginx.path piku-nginx.service piku-certs.service piku-certs.timer \
            piku-addons-backup.service piku-addons-backup.timer; do
        if install_file 644 "share/systemd/$u" "/etc/systemd/system/$u"; then units_changed=true; fi
    done
    if $units_changed; then systemctl daemon-reload; fi
    nginx_was_up=false; emperor_was_up=false
    if systemctl -q is-active nginx; then nginx_was_up=true; fi
    if systemctl -q is-active uwsgi-piku.service; then emperor_was_up=true; fi
    systemctl enable --now ssh nginx uwsgi-piku.service piku-nginx.path piku-certs.timer piku-addons-backup.timer
    if $nginx_changed && $nginx_was_up; then systemctl reload nginx; fi
    if { $units_changed || $ini_changed; } && $emperor_was_up; then systemctl restart uwsgi-piku.service; fi
else
    step "No systemd here: starting sshd, nginx and the uWSGI emperor as background processes"
    note "nothing restarts them after a reboot or a crash; run install.sh again to start what is down"
    if [ -d /etc/cron.d ]; then
        install_file 644 share/cron.d-piku-addons /etc/cron.d/piku-addons || true
    else
        note "no /etc/cron.d: the nightly backup of the add-ons is not scheduled (piku-addons nightly, as piku)"
    fi
    ssh-keygen -A >/dev/null
    if alive /run/sshd.pid sshd; then
        note "sshd is running"
    else
        mkdir -p /run/sshd
        /usr/sbin/sshd -t || die "sshd's configuration is invalid (see above)"
        /usr/sbin/sshd || die "sshd did not start (is another ssh server using port 22?)"
        note "started sshd (port 22)"
    fi
    if alive /run/nginx.pid nginx; then
        if $nginx_changed; then nginx -s reload; note "reloaded nginx"; else note "nginx is running"; fi
    else
        nginx || die "nginx did not start (see above)"
        note "started nginx"
    fi
    pidfile=$PIKU_ROOT/uwsgi/emperor.pid
    if alive "$pidfile" uwsgi && $ini_changed; then
        note "the emperor's configuration changed: stopping it"
        stop_emperor
    fi
    if alive "$pidfile" uwsgi; then
        note "the uWSGI emperor is running"
    else
        rm -f "$pidfile"
        as_piku uwsgi --ini "$ini" --daemonize "$PIKU_ROOT/uwsgi/emperor.log" --pidfile "$pidfile" >/dev/null
        for _ in $(seq 50); do alive "$pidfile" uwsgi && break; sleep 0.2; done
        alive "$pidfile" uwsgi ||
            die "the uWSGI emperor did not start; see $PIKU_ROOT/uwsgi/uwsgi.log and $PIKU_ROOT/uwsgi/emperor.log"
        note "started the uWSGI emperor as piku (pid $(cat "$pidfile"))"
    fi
fi

step "Installing the apps' nginx configuration (piku-nginx-install)"
"$BIN_DIR/piku-nginx-install" ||
    note "piku-nginx-install failed (see above); the apps it names are not served until it succeeds"

for key in "${keys[@]}"; do
    step "Allowing the ssh key $key"
    as_piku "$BIN_DIR/piku" setup:ssh - <"$key"
done

if $demo; then
    step "Demo: deploying share/examples/hello with git push, as a user would"
    home=$(getent passwd "$(id -un)" | cut -d: -f6)
    id_key=$home/.ssh/id_ed25519
    if [ ! -f "$id_key" ]; then
        mkdir -p "$home/.ssh" && chmod 700 "$home/.ssh"
        ssh-keygen -q -t ed25519 -N '' -C "piku demo key" -f "$id_key"
        note "made a throwaway key $id_key"
    fi
    as_piku "$BIN_DIR/piku" setup:ssh - <"$id_key.pub"
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    mkdir "$work/hello"
    cp -R share/examples/hello/. "$work/hello"
    cd "$work/hello"
    export GIT_SSH_COMMAND="ssh -o StrictHostKeyChecking=accept-new -o BatchMode=yes -o IdentitiesOnly=yes -i $id_key"
    export GIT_AUTHOR_NAME="piku demo" GIT_AUTHOR_EMAIL="demo@piku.invalid"
    export GIT_COMMITTER_NAME="piku demo" GIT_COMMITTER_EMAIL="demo@piku.invalid"
    answers() { curl -sf -m 5 -H 'Host: hello.example.com' http://127.0.0.1/; }
    git init -q -b main
    git remote add piku piku@127.0.0.1:hello
    # Continue the demo's history where an earlier run left it, like a user
    # pushing a new commit; a second run with nothing new pushes nothing.
    if git fetch -q piku main 2>/dev/null; then git reset -q --soft FETCH_HEAD; fi
    git add -A
    if git diff --cached --quiet HEAD 2>/dev/null && answers >/dev/null; then
        note "hello is deployed and unchanged: nothing to push"
    else
        git commit -q --allow-empty -m "hello, piku"
        git push piku main 2>&1 | tee "$work/push.log"
        [ "${PIPESTATUS[0]}" -eq 0 ] || die "git push failed (see above)"
        if grep -q "Deploy of 'hello' failed" "$work/push.log"; then die "the demo did not deploy (see above)"; fi
    fi
    cd - >/dev/null
    step "Waiting for hello to answer through nginx"
    for _ in $(seq 60); do answers >/dev/null && break; sleep 1; done
    reply=$(answers) || die "hello does not answer; see: ssh piku@127.0.0.1 logs hello --no-follow"
    note "$reply"
    step "hello is live at http://hello.example.com/ (point that name at this server), or try:"
    note "curl -H 'Host: hello.example.com' http://127.0.0.1/"
fi

step "Done. Deploy an app: git remote add piku piku@$(hostname -f 2>/dev/null || hostname):APP && git push piku main"
