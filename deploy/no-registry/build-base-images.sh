#!/usr/bin/env bash
# The one extra step where no container registry is reachable: build, from Debian's packages only,
# the images `make up` would otherwise pull (docs/deployment.md, "No registry"):
#   imgclf/debian:bookworm                  debootstrap --variant=minbase, docker import
#   imgclf/airflow-base:3.3.2-python3.11   stand-in for apache/airflow:3.3.2-python3.11
#   imgclf/postgres:15                      stand-in for postgres:15 (Debian's postgresql-15)
#   imgclf/redis:7                          stand-in for redis:7 (Debian's redis-server)
# Idempotent: an image already present is kept (FORCE=1 rebuilds). Needs root and a Docker engine.
set -euo pipefail
cd "$(dirname "$0")"
DOCKER=${DOCKER:-docker}
BASE=imgclf/debian:bookworm
have() { "$DOCKER" image inspect "$1" > /dev/null 2>&1 && [ "${FORCE:-0}" != 1 ]; }

if ! have "$BASE"; then
    command -v debootstrap > /dev/null || { echo "no-registry: install debootstrap (apt-get install debootstrap)" >&2; exit 1; }
    # the mirror this machine's apt already uses (the only place packages come from)
    mirror=${DEBIAN_MIRROR:-$(sed -n 's/^URIs:[[:space:]]*\(.*\/debian\)\/\?$/\1/p' /etc/apt/sources.list.d/*.sources 2> /dev/null | head -1)}
    mirror=${mirror:-http://deb.debian.org/debian}
    root=$(mktemp -d /var/tmp/imgclf-rootfs.XXXXXX)
    trap 'rm -rf "$root"' EXIT
    echo "no-registry: debootstrap bookworm from $mirror"
    debootstrap --variant=minbase bookworm "$root" "$mirror" > "$root.log" 2>&1 \
        || { tail -20 "$root.log" >&2; exit 1; }
    rm -f "$root.log"
    security=${DEBIAN_SECURITY_MIRROR:-${mirror%/debian}/debian-security}
    printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb %s bookworm-security main\n' \
        "$mirror" "$mirror" "$security" > "$root/etc/apt/sources.list"
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -c . | "$DOCKER" import --change 'CMD ["bash"]' - "$BASE" > /dev/null
    rm -rf "$root"; trap - EXIT
fi

# the stand-ins, FROM that base (compose.yaml here): apt-get inside needs the host's network
missing=()
for image in imgclf/airflow-base:3.3.2-python3.11 imgclf/postgres:15 imgclf/redis:7; do
    have "$image" || missing+=("$image")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "no-registry: building ${missing[*]}"
    ${COMPOSE:-docker compose} -f compose.yaml build --quiet
fi
echo "no-registry: images ready; in .env:"
echo "  AIRFLOW_BASE_IMAGE=imgclf/airflow-base:3.3.2-python3.11"
echo "  POSTGRES_IMAGE=imgclf/postgres:15"
echo "  REDIS_IMAGE=imgclf/redis:7"
