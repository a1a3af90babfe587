#!/usr/bin/env bash
# Builds a busybox root filesystem for Shoal containers from Debian's
# busybox-static, as a directory and (with --tar) a .tar.gz next to it.
#
#   examples/busybox-rootfs.sh DIR [--tar]
#
# A pod then runs in it with `image: DIR` (or `image: DIR.tar.gz`).
set -euo pipefail
dir=${1:?usage: examples/busybox-rootfs.sh DIR [--tar]}
busybox=/bin/busybox
# A static busybox: it needs no libraries inside the root filesystem.
if ! { ldd "$busybox" 2>&1 || true; } | grep -q "not a dynamic"; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
    else
        echo "needs Debian's busybox-static: sudo apt-get install -y busybox-static" >&2
        exit 1
    fi
fi
rm -rf "$dir"
mkdir -p "$dir"/{bin,sbin,usr/bin,usr/sbin,etc,proc,dev,tmp,root,var}
cp "$busybox" "$dir/bin/busybox"
for applet in $("$busybox" --list); do
    [[ -e "$dir/bin/$applet" ]] || ln -s busybox "$dir/bin/$applet"
done
echo "root:x:0:0:root:/root:/bin/sh" >"$dir/etc/passwd"
echo "root:x:0:" >"$dir/etc/group"
echo "built $dir"
if [[ ${2:-} == "--tar" ]]; then
    tar -czf "$dir.tar.gz" -C "$dir" .
    echo "built $dir.tar.gz"
fi
