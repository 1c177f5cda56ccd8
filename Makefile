# fdslot: `make` builds the executable, `make test` runs every test, `make demo` shows it working.
CARGO ?= cargo
BIN := target/release/fdslot

.PHONY: all build blob test demo size bench bench-quick bench-build bench-deps clean check-toolchain initramfs boot-test boot-deps fuzz fuzz-smoke

all: build

check-toolchain:
	@command -v $(CARGO) >/dev/null || { echo "cargo not found: install Rust (rustup) first" >&2; exit 1; }

build: check-toolchain
	$(CARGO) build --release --bin fdslot

# fdslot.blob: the restore path as a flat position-independent image (see fdslot.h).
blob: check-toolchain
	$(CARGO) build --release --bin fdslot-blob
	objcopy -O binary target/release/fdslot-blob fdslot.blob

# The integration tests spawn target/release/fdslot and ask the kernel what it did (one also
# watches it with strace, which bench-deps installs); the boot test boots it in a real kernel
# (qemu).
test: build bench-deps
	$(CARGO) test --release
	$(MAKE) boot-test
	$(MAKE) fuzz-smoke

# Coverage-guided fuzzing (fuzz/, cargo fuzz on the nightly toolchain; tools/fuzz.sh installs
# cargo-fuzz if absent and skips without a nightly). fuzz-smoke: about 60 s, part of make test;
# fuzz: long runs, FUZZ_SECONDS per target (fuzz/corpus/ keeps what they find).
FUZZ_SMOKE_SECONDS ?= 30
FUZZ_SECONDS ?= 1800
fuzz-smoke:
	tools/fuzz.sh $(FUZZ_SMOKE_SECONDS)

fuzz:
	tools/fuzz.sh $(FUZZ_SECONDS)

# fdslot in an initramfs (README "fdslot in an initramfs"). Two newc archives, written by
# tools/mkinitramfs.py from examples/initramfs/*.list: fdslot as /init (nothing else but the
# tasks' no-libc program), and fdslot run from busybox's shell as /init.
BOOT := build/boot
KERNEL := $(BOOT)/kernel/vmlinuz

boot-deps:
	tools/boot-deps.sh

initramfs: build boot-deps
	$(CARGO) build --release --bin fdslot-probe
	python3 tools/mkinitramfs.py examples/initramfs/init.list $(BOOT)/fdslot-init.cpio
	python3 tools/mkinitramfs.py examples/initramfs/busybox.list $(BOOT)/fdslot-busybox.cpio
	@printf '%s: %s bytes\n' $(BOOT)/fdslot-init.cpio $$(stat -c %s $(BOOT)/fdslot-init.cpio)
	@printf '%s: %s bytes\n' $(BOOT)/fdslot-busybox.cpio $$(stat -c %s $(BOOT)/fdslot-busybox.cpio)

# Boots each archive under qemu (TCG, under a timeout) and checks the serial console.
boot-test: initramfs
	tools/boot-test.sh init $(KERNEL) $(BOOT)/fdslot-init.cpio examples/initramfs/expect-init.txt
	tools/boot-test.sh busybox $(KERNEL) $(BOOT)/fdslot-busybox.cpio examples/initramfs/expect-busybox.txt

demo: build
	$(CARGO) build --release --example fdtable
	bash examples/demo.sh

# Restore times against the private-open floor, both forms; see bench/bench.py.
# strace counts the syscalls per fd (without it that column stays empty), and a test of the
# window (tests/window.rs) watches the wakes with it.
bench-deps:
	@command -v strace >/dev/null || { command -v apt-get >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq strace >/dev/null; } || echo "bench: no strace, no syscall counts" >&2

# examples/seed_floor: the kernel's own cost of the seed's form, which the table compares with.
bench-build: build blob
	$(CARGO) build --release --example seed_floor

bench: bench-build bench-deps
	python3 bench/bench.py

bench-quick: bench-build bench-deps
	python3 bench/bench.py --quick

size: build blob
	@printf '%s: %s bytes stripped\n' $(BIN) $$(stat -c %s $(BIN))
	@printf 'fdslot.blob: %s bytes\n' $$(stat -c %s fdslot.blob)
	@readelf -d $(BIN) | grep -c NEEDED | sed 's/^/NEEDED entries: /' || true

clean:
	$(CARGO) clean
