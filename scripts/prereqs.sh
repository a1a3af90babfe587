#!/usr/bin/env bash
# Makes sure the Debian packages Shoal needs are installed.
#   scripts/prereqs.sh build   what `shoal` needs to compile (libclang for RocksDB,
#                              libseccomp and pkg-config for the agent's seccomp filter)
#   scripts/prereqs.sh test    plus protoc (for the etcd-client test crate),
#                              etcd 3.4 + etcdctl (the reference the tests compare against)
#                              iproute2 (the fault suite's network namespaces)
#                              busybox-static (the agent tests' container image)
#                              python3 (the web example's server)
#                              curl (the JSON gateway tests)
#                              Node.js with npm, then the pinned npm client
#                              packages of tests/clients/node (npm ci)
#                              and python3-venv, then the pinned Python clients
#                              of tests/clients/python in a venv there
#   scripts/prereqs.sh up      what `./dev up` needs: build, plus busybox-static
#                              and python3 for the examples, iproute2 for pod networks
# Installs them with apt-get when running as root on Debian/Ubuntu; otherwise
# prints the exact command to run and fails.
set -euo pipefail

want=(libclang-dev libseccomp-dev pkg-config)
case "${1:-build}" in
test)
    want+=(protobuf-compiler etcd-server etcd-client iproute2 busybox-static python3 python3-venv curl)
    # Any Node.js will do (Debian's, or one installed another way).
    command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || want+=(nodejs npm)
    ;;
up) want+=(busybox-static python3 iproute2) ;;
esac

missing=()
for pkg in "${want[@]}"; do
    if command -v dpkg-query >/dev/null 2>&1; then
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    else
        missing+=("$pkg")
    fi
done
# The npm and Python clients the tests drive, at the versions their lock
# files pin; installed again only when a lock file changes.
client_packages() {
    [[ ${1:-} == test ]] || return 0
    local node=tests/clients/node python=tests/clients/python
    if [[ ! $node/node_modules/.package-lock.json -nt $node/package-lock.json ]]; then
        echo "Installing the npm client packages of $node ..." >&2
        (cd "$node" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    fi
    if [[ ! $python/.venv/installed -nt $python/requirements.txt ]]; then
        echo "Installing the Python client packages of $python ..." >&2
        rm -rf "$python/.venv"
        python3 -m venv "$python/.venv"
        "$python/.venv/bin/pip" install --quiet --disable-pip-version-check -r "$python/requirements.txt"
        touch "$python/.venv/installed"
    fi
}

if [[ ${#missing[@]} -eq 0 ]]; then
    client_packages "${1:-build}"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "Shoal needs these Debian/Ubuntu packages (or your system's equivalents): ${missing[*]}" >&2
    echo "  libclang-dev: libclang for building RocksDB; protobuf-compiler: protoc;" >&2
    echo "  libseccomp-dev/pkg-config: the containers' default seccomp filter;" >&2
    echo "  etcd-server/etcd-client: etcd 3.4 and etcdctl, used by the tests as the reference;" >&2
    echo "  iproute2: ip, for pod networks and the network namespaces of the fault tests;" >&2
    echo "  busybox-static: the root filesystem of the agent tests' containers;" >&2
    echo "  python3: the web server of examples/web.yaml." >&2
    echo "  curl: the JSON gateway tests speak HTTP with it;" >&2
    echo "  nodejs/npm: the npm etcd3 client's tests;" >&2
    echo "  python3-venv: the Python clients' tests (aetcd, etcd3gw)." >&2
    exit 1
fi
if [[ $(id -u) -ne 0 ]]; then
    echo "Missing packages: ${missing[*]}. Install them with:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi
echo "Installing ${missing[*]} ..." >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
client_packages "${1:-build}"
