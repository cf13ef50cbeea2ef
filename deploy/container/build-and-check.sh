#!/usr/bin/env bash
# Build the hoard image and prove that it runs, without an image registry.
#
#   sudo deploy/container/build-and-check.sh
#
# 1. base:  a Debian bookworm minbase with python3, venv and pip, made by debootstrap from
#           Debian's mirror, cached as a tarball in $HOARD_BASE_CACHE and imported into
#           buildah's local storage as localhost/hoard-base:<tag> (both reused next time);
# 2. build: deploy/container/Dockerfile with --build-arg BASE=<that image>, isolation chroot;
# 3. run:   the image's own CMD in a working container (buildah run --isolation chroot, which
#           shares the host's network), on free loopback ports, data in the container;
# 4. check: from the host, with the host's SDK: health, a put and a get compared byte for
#           byte, the metrics endpoint (when this tree has one); inside the container: the
#           image's HEALTHCHECK command. When the tree has TLS and token checking, the
#           daemon runs with the image's own security settings, on secrets made here
#           (throwaway CA, one token) and mounted at /run/secrets/hoard: the host then
#           speaks TLS with the token, and a call without one must be refused;
# 5. stop:  SIGTERM to the daemon, which must exit 0; the container and the built image are
#           removed, the base stays.
#
# Needs root, buildah and debootstrap (Debian packages), and a Python with the hoard SDK
# and grpcio-health-checking ($HOARD_PYTHON, default python3; PYTHONPATH is passed on).
#
# The daemon listens on 127.0.0.1 (a free port), not the image's 0.0.0.0: chroot isolation
# has no network namespace, so 0.0.0.0 would be every interface of this host.
#
# Environment:
#   HOARD_BASE_CACHE   where the debootstrap tarball is kept (default /var/tmp/hoard-base)
#   HOARD_DEBIAN_MIRROR  Debian mirror for debootstrap (default http://deb.debian.org/debian)
#   HOARD_PYTHON       the host's Python for the checks (default python3)
#   HOARD_BUILD_CA_BUNDLE  CA bundle pip trusts during the build (default: this host's,
#                      /etc/ssl/certs/ca-certificates.crt), so that a TLS-intercepting
#                      proxy on the way to PyPI works; mounted for RUN steps, not stored
#   HOARD_KEEP_IMAGE=1 keep the image (localhost/hoard:check-<pid>) after the check

set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$here/../.." && pwd)
cache=${HOARD_BASE_CACHE:-/var/tmp/hoard-base}
mirror=${HOARD_DEBIAN_MIRROR:-http://deb.debian.org/debian}
python=${HOARD_PYTHON:-python3}
suite=bookworm
packages=python3,python3-venv,python3-pip,ca-certificates
# The base's name changes with what goes into it, so a stale cache is never reused.
base_tag=$suite-$(printf '%s %s' "$suite" "$packages" | sha256sum | cut -c1-12)
base_image=localhost/hoard-base:$base_tag
base_tar=$cache/$base_tag.tar
image=localhost/hoard:check-$$ # one per run: checks running at once do not collide
ca_bundle=${HOARD_BUILD_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

workdir=$(mktemp -d /var/tmp/hoard-check.XXXXXX)
container=""
runner_pid=""
secure_client=()

say() { printf '%s\n' "$*"; }
fail() {
    say "FAILED: $*" >&2
    exit 1
}

# step "what" command...: run a step, then say how long it took.
step() {
    local what=$1 started=$EPOCHREALTIME
    shift
    say "==> $what"
    "$@"
    say "    $what: $(elapsed_since "$started") s"
}

elapsed_since() {
    awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'
}

cleanup() {
    local status=$?
    if [[ -n $runner_pid ]] && kill -0 "$runner_pid" 2>/dev/null; then
        local pid
        pid=$(daemon_pid) && kill -KILL "$pid"
        kill "$runner_pid" 2>/dev/null
        wait "$runner_pid" 2>/dev/null
    fi
    if [[ $status -ne 0 && -s $workdir/daemon.log ]]; then
        say "--- last lines of the daemon's log ---" >&2
        tail -n 30 "$workdir/daemon.log" >&2
    fi
    [[ -n $container ]] && buildah rm "$container" >/dev/null
    if [[ ${HOARD_KEEP_IMAGE:-} != 1 ]] && buildah inspect --type image "$image" &>/dev/null; then
        buildah rmi "$image" >/dev/null
    fi
    rm -rf --one-file-system "$workdir"  # never into a mount debootstrap left behind
    exit "$status"
}
trap cleanup EXIT

check_requirements() {
    local missing=()
    [[ $(id -u) -eq 0 ]] || missing+=("root (buildah and debootstrap run as root here)")
    command -v buildah >/dev/null || missing+=("buildah (apt-get install buildah)")
    command -v debootstrap >/dev/null || missing+=("debootstrap (apt-get install debootstrap)")
    "$python" -c 'import hoard, grpc_health' 2>/dev/null ||
        missing+=("the hoard SDK and grpcio-health-checking in $python (set HOARD_PYTHON)")
    if ((${#missing[@]})); then
        printf 'missing: %s\n' "${missing[@]}" >&2
        exit 2
    fi
}

# The debootstrap tarball: made once, then reused from the cache.
make_base_tarball() {
    if [[ -s $base_tar ]]; then
        say "    reusing $base_tar"
        return
    fi
    mkdir -p "$cache"
    local rootfs=$workdir/rootfs
    debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" "$mirror" \
        >"$workdir/debootstrap.log" 2>&1 ||
        { tail -n 20 "$workdir/debootstrap.log" >&2; fail "debootstrap $suite from $mirror"; }
    # Downloaded .debs and package lists are of no use in an image.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -cf "$base_tar.partial" .
    mv "$base_tar.partial" "$base_tar"
    rm -rf --one-file-system "$rootfs"
}

# The tarball as a local image (buildah has no import command: add it to a scratch one).
import_base_image() {
    if buildah inspect --type image "$base_image" &>/dev/null; then
        say "    reusing $base_image"
        return
    fi
    local scratch
    scratch=$(buildah from scratch)
    buildah add --quiet "$scratch" "$base_tar" / >/dev/null
    buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --cmd /bin/bash "$scratch"
    buildah commit --quiet --rm "$scratch" "$base_image" >/dev/null
    say "    $base_image imported from $base_tar"
}

build_image() {
    # --format docker keeps HEALTHCHECK (the OCI image format has no field for it). No
    # --layers: every check builds from the base, and no cache images pile up in storage.
    # Debian's pip trusts the system bundle, which the host's replaces while RUN steps run.
    local trust=()
    [[ -f $ca_bundle ]] && trust=(--volume "$ca_bundle:/etc/ssl/certs/ca-certificates.crt:ro")
    buildah bud --isolation chroot --format docker --pull=never --quiet \
        --build-arg BASE="$base_image" "${trust[@]}" \
        --file "$here/Dockerfile" --ignorefile "$here/Dockerfile.dockerignore" \
        --tag "$image" "$repo_root" >"$workdir/build.log" 2>&1 ||
        { tail -n 40 "$workdir/build.log" >&2; fail "buildah bud"; }
}

free_port() {
    "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The image's CMD, one word per line.
image_cmd() {
    buildah inspect --type image --format '{{range .Docker.Config.Cmd}}{{println .}}{{end}}' "$image"
}

# The image's HEALTHCHECK command without its leading CMD, one word per line.
image_healthcheck() {
    buildah inspect --type image \
        --format '{{range .Docker.Config.Healthcheck.Test}}{{println .}}{{end}}' "$image" |
        sed 1d
}

# TLS in the SDK and token checks in the daemon: then the image runs as configured.
tree_is_secure() {
    "$python" -c '
import importlib.util, inspect, sys
import hoard
tls = "tls_ca" in inspect.signature(hoard.connect).parameters
tokens = importlib.util.find_spec("hoard_server.auth.interceptor") is not None
sys.exit(0 if tls and tokens else 1)'
}

start_daemon() {
    container=$(buildah from --pull=never "$image")
    local cmd security
    mapfile -t cmd < <(image_cmd)
    ((${#cmd[@]})) || fail "$image has no CMD"
    if tree_is_secure; then
        # The image's own [security] settings, on secrets the daemon's user can read.
        mkdir -m 0700 "$workdir/secrets" "$workdir/client"
        "$python" "$here/check_from_host.py" secrets "$workdir/secrets" "$workdir/client"
        chmod 0600 "$workdir"/secrets/*
        chown -R 10001:10001 "$workdir/secrets"
        security=(--volume "$workdir/secrets:/run/secrets/hoard:ro")
        secure_client=(--secrets "$workdir/client")
        say "    secrets at /run/secrets/hoard: a tokens file, a certificate (throwaway CA)"
    else
        # Empty HOARD_* variables switch the image's tokens and TLS off.
        security=(--env HOARD_TOKENS_FILE= --env HOARD_TLS_CERT= --env HOARD_TLS_KEY=)
        say "    no tokens, no TLS (this tree has no TLS in the SDK or no token checks)"
    fi
    say "    running: ${cmd[*]} (config /etc/hoard/hoard.toml)"
    say "    grpc 127.0.0.1:$grpc_port, metrics 127.0.0.1:$metrics_port"
    buildah run --isolation chroot \
        --env HOARD_LISTEN="127.0.0.1:$grpc_port,unix:/run/hoard/hoard.sock" \
        --env HOARD_METRICS_LISTEN="127.0.0.1:$metrics_port" \
        "${security[@]}" "$container" -- "${cmd[@]}" >"$workdir/daemon.log" 2>&1 &
    runner_pid=$!
}

# buildah run does not pass SIGTERM on to its command: signal the daemon itself, the
# innermost process under buildah (chroot isolation has no PID namespace).
daemon_pid() {
    local pid=$runner_pid child
    while child=$(pgrep -P "$pid" | head -n 1) && [[ -n $child ]]; do
        pid=$child
    done
    [[ $pid != "$runner_pid" ]] && say "$pid"
}

check_from_host() {
    local metrics=()
    if [[ -e $repo_root/server/hoard_server/observe ]]; then
        metrics=(--metrics "http://127.0.0.1:$metrics_port/metrics")
    else
        say "    (no metrics endpoint in this tree: server/hoard_server/observe is absent)"
    fi
    "$python" "$here/check_from_host.py" check "127.0.0.1:$grpc_port" \
        "${metrics[@]}" "${secure_client[@]}" || fail "the checks from the host"
    kill -0 "$runner_pid" 2>/dev/null || fail "the daemon exited during the checks"
}

check_healthcheck_inside() {
    local cmd
    mapfile -t cmd < <(image_healthcheck)
    ((${#cmd[@]})) || fail "$image has no HEALTHCHECK"
    local answer
    answer=$(buildah run --isolation chroot "$container" -- "${cmd[@]}" 2>&1) ||
        fail "the image's HEALTHCHECK (${cmd[*]}) inside the container: $answer"
    say "    ${cmd[*]}: $answer"
}

stop_daemon() {
    local pid status=0
    pid=$(daemon_pid) || fail "no daemon process under buildah run ($runner_pid)"
    kill -TERM "$pid"
    wait "$runner_pid" || status=$?
    runner_pid=""
    [[ $status -eq 0 ]] || fail "the daemon exited with status $status after SIGTERM"
    grep -q "everything acknowledged is committed" "$workdir/daemon.log" ||
        fail "the daemon's log does not report a clean stop"
    say "    exit status 0, clean stop logged"
}

main() {
    local started=$EPOCHREALTIME
    check_requirements
    grpc_port=$(free_port)
    metrics_port=$(free_port)
    step "base tarball (debootstrap $suite, cache $cache)" make_base_tarball
    step "base image $base_image" import_base_image
    step "build $image" build_image
    step "start the daemon in a container" start_daemon
    step "check from the host" check_from_host
    step "the image's HEALTHCHECK inside the container" check_healthcheck_inside
    step "stop the daemon (SIGTERM)" stop_daemon
    say "OK: $image built on $base_image and checked in $(elapsed_since "$started") s"
}

main "$@"
