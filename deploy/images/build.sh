#!/usr/bin/env bash
# Build the Fleet images (one per service, and the gateway's) on bases made from Debian packages,
# for machines that cannot pull python:3.11-slim-bookworm or nginx-unprivileged (CI,
# machines without registry access). `make images` and tests/containers run this script;
# docs/images.md describes the images, the bases and the release build.
#
#   deploy/images/build.sh                        # fleet/<name>:dev for every image
#   FLEET_IMAGE_TAG=test deploy/images/build.sh   # fleet/<name>:test
#
# Made once and kept as docker's cache (a second run takes seconds):
#   fleet-local/debian:bookworm       `debootstrap --variant=minbase bookworm`, slimmed, imported
#   fleet-local/python:3.11-bookworm  + python3, python3-venv, ca-certificates (python.Dockerfile)
#   fleet-local/nginx:bookworm        + nginx, gettext-base (nginx.Dockerfile)
# Remove fleet-local/debian:bookworm to take newer Debian packages (`docker rmi`).
#
# Settings (environment):
#   FLEET_IMAGE_TAG      tag of the images (dev)
#   FLEET_IMAGE_PREFIX   repository prefix of the images (fleet/)
#   FLEET_CA_BUNDLE      CA bundle put into the Python base; the builds reach PyPI with it
#                        (/etc/ssl/certs/ca-certificates.crt)
#   FLEET_DEBIAN_MIRROR  where debootstrap fetches bookworm (http://deb.debian.org/debian)
#   FLEET_ROOTFS         a `debootstrap --variant=minbase bookworm` tree made earlier, imported
#                        instead of running debootstrap (copied first, never changed)
#   DOCKER               the docker client (docker)
#
# Every build runs with --network host (no bridge network is needed or used) and the classic
# builder, which every engine since 1.x has. Build output goes to a log file, shown when a
# build fails; the last lines give each image's size and build time.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
here="$repo/deploy/images"
docker=${DOCKER:-docker}
tag=${FLEET_IMAGE_TAG:-dev}
prefix=${FLEET_IMAGE_PREFIX:-fleet/}
ca_bundle=${FLEET_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
mirror=${FLEET_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# The services, in the registry's order (docs/services.md).
# BEGIN generated: services (fleetctl registry sync)
services="inventory shipping support"
# END generated: services

debian_image=fleet-local/debian:bookworm
python_image=fleet-local/python:3.11-bookworm
nginx_image=fleet-local/nginx:bookworm

# The classic builder: docker clients from 23 on would otherwise ask for buildx, which the
# distribution's engine (docker.io) does not ship.
export DOCKER_BUILDKIT=0

fail() {
    echo "build.sh: $*" >&2
    exit 1
}

work=$(mktemp -d "${TMPDIR:-/tmp}/fleet-images.XXXXXX")
keep_logs=""
rootfs=""
cleanup() {
    [ -z "$rootfs" ] || rm -rf "$rootfs"
    if [ -n "$keep_logs" ]; then
        find "$work" -mindepth 1 -maxdepth 1 ! -name '*.log' -exec rm -rf {} +
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

# logged NAME COMMAND...: run COMMAND with its output in $work/NAME.log; on failure show the
# end of the log and keep it.
logged() {
    local name=$1 log="$work/$1.log"
    shift
    if ! "$@" >"$log" 2>&1; then
        keep_logs=1
        tail -n 60 "$log" >&2
        fail "$name failed (whole log: $log)"
    fi
}

# The client must talk to the engine: a newer client negotiates the engine's API version down.
server_version=$("$docker" version --format '{{.Server.Version}}' 2>&1) \
    || fail "no Docker engine answers '$docker version' ($server_version); start dockerd"
[ -r "$ca_bundle" ] || fail "FLEET_CA_BUNDLE $ca_bundle is not readable"

# One build at a time on this engine: two test runs would otherwise both run debootstrap and
# race to tag the same images.
if command -v flock >/dev/null 2>&1; then
    exec 9>"${TMPDIR:-/tmp}/fleet-images.lock"
    flock 9
fi

declare -a summary=()
seconds_since() {
    echo $(($(date +%s) - $1))
}
record() {
    local image=$1 started=$2 bytes
    bytes=$("$docker" image inspect --format '{{.Size}}' "$image")
    summary+=("$(printf '%-36s %6d MB %5d s' "$image" $((bytes / 1000000)) \
        "$(seconds_since "$started")")")
}

# --- fleet-local/debian:bookworm --------------------------------------------------------------

# slim ROOT: what the official debian:bookworm-slim image leaves out (documentation, manual
# pages, translations; copyright files stay), for this tree and for every package installed
# on it later; apt keeps no package files or lists; no package starts a service in a build.
slim() {
    local root=$1
    cat >"$root/etc/dpkg/dpkg.cfg.d/docker-slim" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
CFG
    find "$root/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
    find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$root"/usr/share/{man,groff,info,lintian,linda,locale}/*
    cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'CFG'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Acquire::Languages "none";
CFG
    # A package's postinst would otherwise start its daemon (nginx) during the image build,
    # on the host's network.
    printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
    chmod 0755 "$root/usr/sbin/policy-rc.d"
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin \
        "$root"/var/lib/apt/lists/* "$root"/var/log/* "$root"/tmp/* "$root"/root/.cache
    : >"$root/etc/machine-id"
}

make_debian_image() {
    local root started
    started=$(date +%s)
    [ "$(id -u)" = 0 ] || fail "$debian_image is missing and debootstrap needs root (sudo make images)"
    # On disk, not in a tmpfs /tmp: debootstrap runs programs inside the tree and makes
    # device nodes, which a noexec or nodev mount refuses.
    rootfs=$(mktemp -d /var/tmp/fleet-rootfs.XXXXXX)
    root=$rootfs
    if [ -n "${FLEET_ROOTFS:-}" ]; then
        [ -x "$FLEET_ROOTFS/usr/bin/apt-get" ] || fail "FLEET_ROOTFS $FLEET_ROOTFS is no Debian tree"
        logged copy-rootfs cp -a "$FLEET_ROOTFS/." "$root/"
    else
        command -v debootstrap >/dev/null 2>&1 \
            || fail "debootstrap is not installed (apt-get install debootstrap)"
        logged debootstrap debootstrap --variant=minbase bookworm "$root" "$mirror"
    fi
    slim "$root"
    # /dev, /proc and /sys are the engine's: only the empty directories go into the image.
    tar --numeric-owner --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -C "$root" -c . \
        | "$docker" import \
            --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'CMD ["bash"]' \
            --message "debootstrap --variant=minbase bookworm $mirror" - "$debian_image" \
            >/dev/null
    rm -rf "$rootfs"
    rootfs=""
    record "$debian_image" "$started"
}

if ! "$docker" image inspect "$debian_image" >/dev/null 2>&1; then
    make_debian_image
fi

# --- the bases and the images -----------------------------------------------------------------

started=$(date +%s)
mkdir "$work/python-context"
cp "$here/python.Dockerfile" "$work/python-context/Dockerfile"
cp "$ca_bundle" "$work/python-context/ca-certificates.crt"
logged python-base "$docker" build --network host --build-arg "DEBIAN_IMAGE=$debian_image" \
    -t "$python_image" "$work/python-context"
record "$python_image" "$started"

started=$(date +%s)
logged nginx-base "$docker" build --network host --build-arg "DEBIAN_IMAGE=$debian_image" \
    -t "$nginx_image" - <"$here/nginx.Dockerfile"
record "$nginx_image" "$started"

for service in $services; do
    started=$(date +%s)
    logged "$service" "$docker" build --network host --build-arg "PYTHON_IMAGE=$python_image" \
        -f "$repo/services/$service/Dockerfile" -t "$prefix$service:$tag" "$repo"
    record "$prefix$service:$tag" "$started"
done

started=$(date +%s)
logged gateway "$docker" build --network host --build-arg "NGINX_IMAGE=$nginx_image" \
    --build-arg "PYTHON_IMAGE=$python_image" -t "${prefix}gateway:$tag" "$repo/gateway"
record "${prefix}gateway:$tag" "$started"

printf '%s\n' "${summary[@]}"
