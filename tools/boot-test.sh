#!/usr/bin/env bash
# Boots one initramfs in a real Linux kernel under qemu (TCG) and checks its serial console.
#
# usage: tools/boot-test.sh NAME KERNEL INITRD EXPECTED [KERNEL ARGS...]
#
# Passes when the console lines, kernel messages left out, are exactly the lines of EXPECTED,
# from the first of them on, and the guest powered off (the kernel says "reboot: Power down",
# never "Kernel panic", and qemu ends by itself). Fails with the
# whole console log otherwise. qemu runs under `timeout`, so a guest that hangs fails too.
set -euo pipefail
name=$1 kernel=$2 initrd=$3 expected=$4
shift 4
limit=${BOOT_TIMEOUT:-120}
log=build/boot/$name.console
mkdir -p build/boot
start=$(date +%s%N)
set +e
# -no-reboot: a kernel panic (panic=-1 reboots at once) ends qemu instead of looping.
timeout --kill-after=5 "$limit" qemu-system-x86_64 -accel tcg -cpu max -m 256 -smp 1 \
    -nodefaults -display none -no-reboot -serial "file:$log" \
    -kernel "$kernel" -initrd "$initrd" \
    -append "console=ttyS0 panic=-1 loglevel=1 $*" </dev/null
rc=$?
set -e
end=$(date +%s%N)
ms=$(( (end - start) / 1000000 ))
fail() {
    echo "boot-test: $name: FAIL: $1" >&2
    echo "----- console of $name ($log) -----" >&2
    tr -d '\r' <"$log" >&2 || true
    echo "----- end of console -----" >&2
    exit 1
}
[ -f "$log" ] || fail "qemu wrote no console log (exit $rc)"
[ "$rc" -eq 0 ] || fail "qemu exited with $rc (124: timed out after ${limit}s; the guest did not power off)"
# A clean power-off, not a panic (which also ends qemu, by -no-reboot).
grep -aq 'reboot: Power down' "$log" || fail "the kernel did not say 'reboot: Power down'"
if grep -aq 'Kernel panic' "$log"; then fail "the kernel panicked"; fi
# The console without carriage returns and without kernel messages ("[    1.234567] ...").
got=$(tr -d '\r' <"$log" | grep -av '^\[ *[0-9]*\.[0-9]*\]' || true)
first=$(head -n 1 "$expected")
tail_from_first=$(printf '%s\n' "$got" | sed -n "\\|^$(printf '%s' "$first" | sed 's/[][\\.*^$|]/\\&/g')\$|,\$p")
if [ "$tail_from_first" != "$(cat "$expected")" ]; then
    diff <(printf '%s\n' "$tail_from_first") "$expected" >&2 || true
    fail "the console lines differ from $expected (diff above: < console, > expected)"
fi
printf 'boot-test: %s: ok (boot to power-off %d.%03d s, %s bytes of initramfs)\n' "$name" $((ms / 1000)) $((ms % 1000)) "$(stat -c %s "$initrd")"
