#!/bin/sh
# t_eval.sh - `dsv4 eval` command line: help, the built-in suite from any
# directory (compiled in), --limit, usage errors with clear messages.
# The scripted-endpoint runs live in tests/test_eval_e2e.c.
DSV4=${DSV4:-build/dsv4}
case "$DSV4" in /*) ;; *) DSV4="$(pwd)/$DSV4";; esac
pass=0; fail=0
ok()  { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $1"; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$DSV4" eval --help | grep -q -- "--endpoint URL" && ok || bad "help lists --endpoint"
out=$(cd "$tmp" && "$DSV4" eval --list | tail -1)
[ "$out" = "50 templates, 57 items" ] && ok || bad "built-in suite from another directory: $out"
out=$("$DSV4" eval --list --limit 5 | tail -1)
[ "$out" = "5 templates, 6 items" ] && ok || bad "--limit 5: $out"
out=$("$DSV4" eval --list --max-context 2048 | grep -c '^long_needle')
[ "$out" = "5" ] && ok || bad "--max-context 2048 keeps 5 needle items: $out"
out=$("$DSV4" eval --list --long-context 1k,8k | grep -c '^long_needle')
[ "$out" = "8" ] && ok || bad "--long-context 1k,8k: $out"
"$DSV4" eval --out "$tmp/x" 2>"$tmp/err"; rc=$?
[ $rc -eq 2 ] && grep -q "required" "$tmp/err" && ok || bad "missing --endpoint is a usage error (rc $rc)"
"$DSV4" eval --endpoint http://127.0.0.1:1 --out "$tmp/x" --price-in 0.1234567 2>"$tmp/err"; rc=$?
[ $rc -eq 2 ] && grep -q "6 decimals" "$tmp/err" && ok || bad "bad price (rc $rc)"
"$DSV4" eval --endpoint http://127.0.0.1:1 --out "$tmp/x" --concurrency 0 2>"$tmp/err"; rc=$?
[ $rc -eq 2 ] && ok || bad "concurrency 0 refused (rc $rc)"
"$DSV4" eval --endpoint http://127.0.0.1:1,bogus=1 --out "$tmp/x" 2>"$tmp/err"; rc=$?
[ $rc -eq 2 ] && grep -q "unknown endpoint option" "$tmp/err" && ok || bad "unknown endpoint option (rc $rc)"
printf '{"id":"a","prompt":"x","check":{"type":"nope"}}\n' > "$tmp/s.jsonl"
"$DSV4" eval --suite "$tmp/s.jsonl" --list 2>"$tmp/err"; rc=$?
[ $rc -eq 1 ] && grep -q 'unknown check type "nope"' "$tmp/err" && ok || bad "bad suite reported (rc $rc)"
"$DSV4" eval --mock-serve "$tmp/none.json" 2>"$tmp/err"; rc=$?
[ $rc -eq 1 ] && ok || bad "mock with a missing script (rc $rc)"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
