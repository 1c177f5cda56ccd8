#!/usr/bin/env bash
# make demo: restore examples/demo.plan with fdslot, show the tables as the kernel sees them,
# then let the tasks run and show that they really share their log and pipe.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
fdslot="$top/target/release/fdslot"
fdtable="$top/target/release/examples/fdtable"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

"$fdslot" check "$top/examples/demo.plan"
"$fdslot" run "$top/examples/demo.plan" --stop > run.out &
run=$!
for _ in $(seq 100); do grep -q '^ready$' run.out 2>/dev/null && break; sleep 0.05; done
grep -q '^ready$' run.out || { echo "demo: fdslot run did not get ready" >&2; kill $run; exit 1; }
pids=$(awk '$1 == "task" { print $4 }' run.out)
echo
echo "fdslot run --stop restored the tasks; their tables, as /proc and kcmp(KCMP_FILE) report them:"
"$fdtable" $pids
for pid in $pids; do
    printf 'pid %s fd 8: %s\n' "$pid" "$(grep eventfd-count /proc/$pid/fdinfo/8 | tr -s ' \t' ' ')"
done
echo
echo "Resuming the tasks; they write to fd 3 (one shared description), the pipe and the socket pair:"
kill -CONT $pids
wait $run
echo "--- demo.log"
cat demo.log
