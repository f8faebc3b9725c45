#!/bin/sh
# t_bench.sh - `dsv4 bench` on the tiny golden checkpoint: usage errors,
# and the JSON the held-out checks read (bandwidth, decode per context with
# bytes/roofline/layer/head figures, prefill with the GEMM peak, RSS).
DSV4=${DSV4:-build/dsv4}
pass=0; fail=0
ok()   { pass=$((pass + 1)); }
bad()  { fail=$((fail + 1)); echo "FAIL: $*"; }
t() { if eval "$2"; then ok; else bad "$1"; fi; }
tmp=$(mktemp -d /tmp/dsv4-t-bench.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
M=tests/data/golden/tiny-a

t "help exits 0" '"$DSV4" bench --help >/dev/null'
"$DSV4" bench 2>"$tmp/err"; rc=$?
t "missing -m is a usage error" '[ $rc -eq 2 ] && grep -q "\-m DIR" "$tmp/err"'
"$DSV4" bench -m $M --ctx 1,x 2>"$tmp/err"; rc=$?
t "bad --ctx list is a usage error" '[ $rc -eq 2 ] && grep -q "ctx" "$tmp/err"'
"$DSV4" bench -m $M --fill nope 2>"$tmp/err"; rc=$?
t "bad --fill is a usage error" '[ $rc -eq 2 ]'
"$DSV4" bench -m /nonexistent 2>"$tmp/err"; rc=$?
t "missing model is a runtime error" '[ $rc -eq 1 ] && [ -s "$tmp/err" ]'

"$DSV4" bench -m $M --threads 2 --ctx 0,64,120 --prompt 32 --gen 3 --bw-mb 32 --json >"$tmp/b.json" 2>"$tmp/err"; rc=$?
t "bench runs" '[ $rc -eq 0 ]'
# j FILE EXPR: EXPR (JavaScript, the object is b) holds for the JSON in FILE
j() { node -e 'const b = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
               process.exit(eval(process.argv[2]) ? 0 : 1)' "$1" "$2" 2>/dev/null; }
t "valid JSON" 'j "$tmp/b.json" "true"'
t "bandwidth_gbs > 0" 'j "$tmp/b.json" "b.bandwidth_gbs > 0"'
t "bandwidth_gbs is the higher of the two probes" 'j "$tmp/b.json" "b.bandwidth_probes_gbs.length == 2 && b.bandwidth_gbs == Math.max(...b.bandwidth_probes_gbs)"'
# where the threads sit: one thread's bandwidth and the round trip between
# threads 0 and 1 before and after the decode points (0 if a probe timed out)
t "one-thread bandwidth" 'j "$tmp/b.json" "b.bandwidth_1thread_gbs > 0"'
t "attempts: 1 to 3 (the decode points again while the probes disagree)" 'j "$tmp/b.json" "Number.isInteger(b.attempts) && b.attempts >= 1 && b.attempts <= 3"'
DSV4_BENCH_AGREE=0 "$DSV4" bench -m $M --threads 2 --ctx 0 --prompt 0 --gen 2 --bw-mb 16 --json >"$tmp/b3.json" 2>"$tmp/err3"
t "probes that never agree: the decode points measured 3 times, each retry said" 'j "$tmp/b3.json" "b.attempts == 3 && b.decode.length == 1 && b.decode[0].tok_s > 0" && [ "$(grep -c "measuring the decode points again" "$tmp/err3")" = 2 ]'
t "core round trips" 'j "$tmp/b.json" "b.core_round_trip_ns.length == 2 && b.core_round_trip_ns.every(x => x >= 0 && x < 1e7)"'
t "decode ctx values" 'j "$tmp/b.json" "b.decode.map(d => d.ctx).join() == \"0,64,120\""'
t "decode fields" 'j "$tmp/b.json" "b.decode.every(d => d.tok_s > 0 && d.bytes_per_token > 0 && d.roofline_fraction > 0 && typeof d.layer_ms == \"number\" && d.head_ms > 0)"'
t "bytes per token grow with context" 'j "$tmp/b.json" "b.decode[2].bytes_per_token > b.decode[0].bytes_per_token"'
t "prefill fields" 'j "$tmp/b.json" "b.prefill.tok_s > 0 && b.prefill.gflops > 0 && b.prefill.gemm_peak_gflops > 0"'
t "rss_mb" 'j "$tmp/b.json" "b.rss_mb > 0"'
# the share of the weights the kernel maps in 2 MiB pages (-1: unknown)
t "weights_hugepage_fraction" 'j "$tmp/b.json" "b.weights_hugepage_fraction == -1 || (b.weights_hugepage_fraction >= 0 && b.weights_hugepage_fraction <= 1)"'
t "2 MiB page share printed" 'grep -q "in 2 MiB pages" "$tmp/err"'
# random fill and a real prefill give caches of the same shapes: both run
"$DSV4" bench -m $M --threads 2 --ctx 40 --prompt 0 --gen 2 --bw-mb 32 --fill prefill --json >"$tmp/p.json" 2>"$tmp/err"; rc=$?
t "prefill-filled context runs" '[ $rc -eq 0 ] && j "$tmp/p.json" "b.decode[0].ctx == 40"'
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
