#!/bin/sh
# Runs every test program (build/tests/test_*) and script (tests/t_*.sh),
# each of which ends its output with "N passed, N failed", and prints the
# totals.  Exit status is non-zero if anything failed or crashed.
BUILD=${BUILD:-build}
export BUILD DSV4=${DSV4:-$BUILD/dsv4}
tp=0; tf=0; crashed=0
log=$(mktemp)
for t in "$BUILD"/tests/test_* tests/t_*.sh; do
    [ -e "$t" ] || continue
    case "$t" in *.d|*.o) continue;; esac
    start=$(date +%s)
    case "$t" in *.sh) sh "$t" >"$log" 2>&1;; *) "$t" >"$log" 2>&1;; esac
    rc=$?
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -1)
    p=$(echo "$line" | sed -n 's/^\([0-9]*\) passed.*/\1/p'); p=${p:-0}
    f=$(echo "$line" | sed -n 's/.* \([0-9]*\) failed.*/\1/p'); f=${f:-0}
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; crashed=1; fi
    tp=$((tp + p)); tf=$((tf + f))
    secs=$(( $(date +%s) - start ))
    if [ "$f" -ne 0 ]; then
        echo "FAIL $t ($p passed, $f failed, rc=$rc, ${secs}s)"; grep -E 'FAIL|rror|Sanitizer|runtime error' "$log" | head -30
    else
        echo "ok   $t ($p passed, ${secs}s)"
    fi
done
rm -f "$log"
echo "$tp passed, $tf failed"
[ "$tf" -eq 0 ]
