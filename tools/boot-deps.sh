#!/usr/bin/env bash
# What `make boot-test` needs besides fdslot, on a Debian machine (as root, for apt-get):
#   qemu-system-x86           installed with apt-get if qemu-system-x86_64 is absent;
#   build/boot/kernel/vmlinuz  from $KERNEL_PKG, fetched with `apt-get download` and unpacked
#                             with dpkg-deb (not installed; only its /boot); its config is checked for what the
#                             boot test needs built in (no modules go into the archive);
#   build/boot/busybox/bin/busybox  from busybox-static, fetched and unpacked the same way
#                             (installing it would replace the machine's busybox).
# Each is fetched once; build/boot/ is not committed.
set -euo pipefail
boot=build/boot
mkdir -p "$boot/deb"
apt_updated=
apt_update() {
    [ -n "$apt_updated" ] || { apt-get update -qq; apt_updated=1; }
}
available() { apt-cache show "$1" >/dev/null 2>&1; }

# fetch PACKAGE DIR [MEMBER]: downloads PACKAGE's .deb into build/boot/deb and unpacks it (or
# only MEMBER of it, such as ./boot: a kernel's modules are most of its package) into DIR.tmp.
fetch() {
    local pkg=$1 dir=$2 member=${3:-.} deb
    available "$pkg" || apt_update
    (cd "$boot/deb" && rm -f "${pkg}"_*.deb && apt-get download -q -o APT::Sandbox::User=root "$pkg")
    deb=$(ls "$boot/deb/${pkg}"_*.deb)
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$dir.tmp" "$member"
    echo "boot-deps: $(basename "$deb") -> $dir"
    rm -f "$deb"
}

if ! command -v qemu-system-x86_64 >/dev/null; then
    available qemu-system-x86 || apt_update
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends qemu-system-x86
fi

if [ ! -f "$boot/kernel/vmlinuz" ]; then
    pkg=${KERNEL_PKG:-linux-image-6.1.0-42-amd64-unsigned}
    available "$pkg" || apt_update
    if ! available "$pkg"; then
        # The archive moves on: take the newest 6.1 image it has, and say so.
        newest=$(apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64-unsigned$' | cut -d' ' -f1 | sort -V | tail -n 1)
        [ -n "$newest" ] || { echo "boot-deps: no linux-image-6.1.0-*-amd64-unsigned package in apt's lists" >&2; exit 1; }
        echo "boot-deps: $pkg is not in the archive; using $newest" >&2
        pkg=$newest
    fi
    fetch "$pkg" "$boot/kernel" ./boot
    config=$(ls "$boot"/kernel.tmp/boot/config-*)
    # Built in (=y), since the archive holds no modules: the initramfs and its script /init,
    # the serial console, AF_UNIX, what fdslot calls (eventfd, signalfd, memfd, futex, kcmp),
    # /proc for scenario 2, and ACPI to power off.
    for opt in BLK_DEV_INITRD BINFMT_ELF BINFMT_SCRIPT SERIAL_8250 SERIAL_8250_CONSOLE UNIX \
               EVENTFD SIGNALFD MEMFD_CREATE FUTEX KCMP PROC_FS ACPI; do
        grep -qx "CONFIG_$opt=y" "$config" || { echo "boot-deps: $config: CONFIG_$opt is not built in" >&2; exit 1; }
    done
    mv "$boot"/kernel.tmp/boot/vmlinuz-* "$boot/kernel.tmp/vmlinuz"
    mv "$config" "$boot/kernel.tmp/config"
    rm -rf "$boot/kernel.tmp/boot" "$boot/kernel"
    mv "$boot/kernel.tmp" "$boot/kernel"
fi

if [ ! -f "$boot/busybox/bin/busybox" ]; then
    fetch busybox-static "$boot/busybox"
    rm -rf "$boot/busybox" && mv "$boot/busybox.tmp" "$boot/busybox"
fi
