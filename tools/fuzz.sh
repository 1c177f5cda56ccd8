#!/usr/bin/env bash
# Coverage-guided fuzzing of the plan parser and the blob's argument checks (fuzz/, cargo fuzz,
# the nightly toolchain): `tools/fuzz.sh SECONDS [TARGET...]` runs each target that long from
# its committed seeds (fuzz/seeds/T) plus the corpus it grew before (fuzz/corpus/T, not
# committed), and prints the executions run. A crash fails with the reproducing input's path.
# Without a nightly toolchain it says so and succeeds (CI must not break for want of one).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(plan blob_args)
if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz: no nightly toolchain (rustup toolchain install nightly); fuzzing skipped" >&2
    exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz from crates.io" >&2
    cargo install cargo-fuzz --locked
fi
cd fuzz
for t in "${targets[@]}"; do cargo +nightly fuzz build -O -a "$t"; done
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    dict=()
    [ -f "$t.dict" ] && dict=("-dict=$t.dict")
    [ "$t" = blob_args ] && [ -f plan.dict ] && dict=("-dict=plan.dict")
    log=$(mktemp)
    # -timeout: one input taking 10 s is a hang; -rss_limit_mb: memory stays bounded.
    if ! cargo +nightly fuzz run -O -a "$t" "corpus/$t" "seeds/$t" -- \
        "${dict[@]}" -max_total_time="$secs" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$log" 2>&1; then
        cat "$log" >&2
        echo "fuzz $t: FAILED (input in fuzz/artifacts/$t/)" >&2
        exit 1
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
    echo "fuzz $t: ${runs:-?} executions in ${secs} s, no crash, no hang (${cov}; corpus $(ls "corpus/$t" | wc -l) inputs)"
    rm -f "$log"
done
