# fdslot: `make` builds the executable, `make test` runs every test, `make demo` shows it working.
CARGO ?= cargo
BIN := target/release/fdslot

.PHONY: all build blob test demo size bench bench-quick clean check-toolchain

all: build

check-toolchain:
	@command -v $(CARGO) >/dev/null || { echo "cargo not found: install Rust (rustup) first" >&2; exit 1; }

build: check-toolchain
	$(CARGO) build --release --bin fdslot

# fdslot.blob: the restore path as a flat position-independent image (see fdslot.h).
blob: check-toolchain
	$(CARGO) build --release --bin fdslot-blob
	objcopy -O binary target/release/fdslot-blob fdslot.blob

# The integration tests spawn target/release/fdslot and ask the kernel what it did.
test: build
	$(CARGO) test --release

demo: build
	$(CARGO) build --release --example fdtable
	bash examples/demo.sh

# Restore times against the private-open floor, both forms; see bench/bench.py.
bench: build blob
	python3 bench/bench.py

bench-quick: build blob
	python3 bench/bench.py --quick

size: build blob
	@printf '%s: %s bytes stripped\n' $(BIN) $$(stat -c %s $(BIN))
	@printf 'fdslot.blob: %s bytes\n' $$(stat -c %s fdslot.blob)
	@readelf -d $(BIN) | grep -c NEEDED | sed 's/^/NEEDED entries: /' || true

clean:
	$(CARGO) clean
