#!/bin/sh
# Scenario 2 of `make boot-test`: /init is busybox's shell (Debian's busybox-static). It mounts
# /proc, restores /verify.plan with `fdslot run --stop`, asks the kernel what the stopped tasks
# hold, lets them run, prints PASS or FAIL, and powers off. pid 1 must not exit (the kernel
# would panic), so every path ends in `poweroff -f`.
export PATH=/bin
/bin/busybox --install -s /bin
mount -t proc proc /proc
echo "boot-test: busybox init, /proc mounted"

checks=0
fails=0
check() { # check WHAT CONDITION...: one kernel fact
    what=$1
    shift
    checks=$((checks + 1))
    if ! "$@"; then
        echo "FAIL: $what"
        fails=$((fails + 1))
    fi
}
pos() { sed -n 's/^pos:[[:space:]]*//p' "/proc/$1/fdinfo/$2"; }
flags() { sed -n 's/^flags:[[:space:]]*//p' "/proc/$1/fdinfo/$2"; }
accmode() { f=$(flags "$1" "$2"); echo $((f & 3)); }
cloexec() { f=$(flags "$1" "$2"); echo $(((f & 02000000) != 0)); }
fds() { echo $(ls "/proc/$1/fd"); }
is() { [ "$1" = "$2" ]; }
isnt() { [ "$1" != "$2" ]; }
matches() { case $1 in $2) return 0 ;; esac; return 1; }

# verify_from_proc PLAN: restores PLAN with `fdslot run --stop` and checks the tables through
# /proc; returns 0 when every check holds.
verify_from_proc() {
    fdslot run --stop "$1" >/tmp/run.out 2>&1 &
    run=$!
    i=0
    until grep -qx ready /tmp/run.out; do
        i=$((i + 1))
        if [ $i -gt 200 ] || ! kill -0 $run 2>/dev/null; then
            cat /tmp/run.out
            echo "FAIL: fdslot run --stop did not print ready"
            return 1
        fi
        sleep 0.05
    done
    t1=$(sed -n 's/^task 1 pid //p' /tmp/run.out)
    t2=$(sed -n 's/^task 2 pid //p' /tmp/run.out)
    check "task 1 holds fds 1 2 3 5 6, nothing else" is "$(fds $t1)" "1 2 3 5 6"
    check "task 2 holds fds 1 2 3 4 5 6, nothing else" is "$(fds $t2)" "1 2 3 4 5 6"
    for t in $t1 $t2; do
        for f in 1 2; do
            check "pid $t fd $f is /dev/console, write-only" is "$(readlink /proc/$t/fd/$f) $(accmode $t $f)" "/dev/console 1"
        done
    done
    check "task 1 fd 3: /shared.log, read-write, at 5, no cloexec" is "$(readlink /proc/$t1/fd/3) $(accmode $t1 3) $(pos $t1 3) $(cloexec $t1 3)" "/shared.log 2 5 0"
    check "task 2 fd 3: /shared.log, read-write, at 5, cloexec" is "$(readlink /proc/$t2/fd/3) $(accmode $t2 3) $(pos $t2 3) $(cloexec $t2 3)" "/shared.log 2 5 1"
    check "task 2 fd 4: /shared.log, read-only, at 0" is "$(readlink /proc/$t2/fd/4) $(accmode $t2 4) $(pos $t2 4)" "/shared.log 0 0"
    check "task 1 fd 5 is a pipe's write end" is "$(accmode $t1 5)" 1
    check "task 2 fd 5 is a pipe's read end" is "$(accmode $t2 5)" 0
    check "task 1 fd 5 and task 2 fd 5 are one pipe" matches "$(readlink /proc/$t1/fd/5)" "pipe:\[*\]"
    check "task 1 fd 5 and task 2 fd 5 are one pipe" is "$(readlink /proc/$t1/fd/5)" "$(readlink /proc/$t2/fd/5)"
    check "task 1 fd 6 is a socket" matches "$(readlink /proc/$t1/fd/6)" "socket:\[*\]"
    check "task 2 fd 6 is a socket" matches "$(readlink /proc/$t2/fd/6)" "socket:\[*\]"
    check "task 1 fd 6 and task 2 fd 6 are the pair's two ends" isnt "$(readlink /proc/$t1/fd/6)" "$(readlink /proc/$t2/fd/6)"
    # Task 1 writes 10 bytes through its fd 3 and exits; task 2, still stopped, sees its fd 3
    # move with it (one description), and its fd 4 stay (another one).
    kill -CONT $t1
    i=0
    while [ -e /proc/$t1/fd/3 ] && [ $i -lt 200 ]; do
        i=$((i + 1))
        sleep 0.05
    done
    check "task 2 fd 3 moved to 15 with task 1's write: one description" is "$(pos $t2 3)" 15
    check "task 2 fd 4 stayed at 0: a description of its own" is "$(pos $t2 4)" 0
    kill -CONT $t2
    wait $run
    rc=$?
    check "fdslot run exited 0 (it said: $(grep -v '^task\|^ready' /tmp/run.out))" is $rc 0
    # Quiet on success, so that the expected console is the same with `fdslot run --verify`.
    [ $fails -eq 0 ] || echo "boot-test: $fails of $checks checks failed"
    [ $fails -eq 0 ]
}

# The check: `fdslot run --verify PLAN` checks the restored tables from inside fdslot (kcmp,
# /proc/PID/fd, fdinfo; this kernel has no unix_diag module loaded, so socket pair peers go
# unchecked) before the tasks go on, and prints each mismatch. VERIFY=verify_from_proc checks
# the same tables from this shell through /proc instead; both print the same lines.
VERIFY="fdslot run --verify"
if $VERIFY /verify.plan; then
    echo "boot-test: verify: PASS"
else
    echo "boot-test: verify: FAIL"
fi
poweroff -f
