#!/usr/bin/env bash
# make demo: restore examples/demo.plan with fdslot, show the tables as the kernel sees them,
# then let the tasks run and show that they really share their log and pipe.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
fdslot="$top/target/release/fdslot"
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
echo "fdslot run --stop restored the tasks; fdslot verify checks them against the plan, asking"
echo "/proc, fdinfo and kcmp(KCMP_FILE) what the kernel holds:"
"$fdslot" verify "$top/examples/demo.plan" $(awk '$1 == "task" { printf "%s=%s ", $2, $4 }' run.out)
echo
echo "fdslot capture of the restored tree: the plan back, from the kernel alone:"
"$fdslot" capture $(echo $pids | cut -d' ' -f1) --tree | grep -v '^task'
echo
echo "Resuming the tasks; they write to fd 3 (one shared description), the pipe and the socket pair:"
kill -CONT $pids
wait $run
echo "--- demo.log"
cat demo.log
