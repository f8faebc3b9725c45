#!/bin/sh
# vs-llamacpp.sh - dsv4 and llama.cpp side by side on the same GGUF file.
#
#   bench/vs-llamacpp.sh [--rounds R] [--attempts A] [--threads T] [--gen N] [--keep]
#
# 1. llama.cpp: the npm package node-llama-cpp@3.21.1 carries a llama.cpp
#    source tree with the deepseek4 architecture (llama/gitRelease.bundle).
#    The package tarball is checked against `npm view ... dist.integrity`,
#    the bundle cloned and built for the CPU with cmake, out of tree, under
#    the scratch directory ($DSV4_BENCH_DIR, default /tmp/dsv4-vs-llamacpp).
#    Nothing of llama.cpp enters this repository.  Built once, then reused.
# 2. Models: `dsv4 gen --preset flash --layers L --experts 32 --seed 1`
#    (V4-Flash shapes, random weights) for L = 4 and 8, each converted with
#    `dsv4 convert --type mxfp4-moe` (the official ggml-org layout).
# 3. Decode rounds, alternating the engines on the same files, T threads
#    each, in the order
#      dsv4 bench --ctx 0 --prompt 0 --gen N --json on the 4-layer file
#      llama-bench -p 0 -n N -r 1 on the 4-layer file (tgN)
#      llama-bench -p 0 -n N -r 1 on the 8-layer file (tgN)
#      dsv4 bench --ctx 0 --prompt 0 --gen N --json on the 8-layer file
#    (N = --gen, default 32), so that dsv4 bench's bandwidth and placement
#    probes bracket llama.cpp's runs.  A round is steady when all four
#    probes agree within 15% and the threads stayed in one place: on hosts
#    that move vCPUs between CCDs every minute or two, a round that
#    straddles a move gives layer and head times that no engine has.  An
#    unsteady round is run again, up to --attempts A rounds in all
#    (default 4 x R), until R rounds are steady; the medians are over the
#    steady rounds (over all, with a warning, if none was).  A round is
#    short (about 30 s) so that it can fit between two moves.
# 4. Prefill rounds, R of them: dsv4 bench --prompt 512 and llama-bench
#    -p 512 -n 0 -r 1 on the 4-layer file, alternating (compute-bound, so
#    the placement matters little); medians.
#
# Flash-equivalent decode (a 43-layer model): per token 43 x layer time +
# head time, per engine, both engines measured the same way in the same
# run: layer time (t8 - t4) / 4 from the 4- and 8-layer files (t = 1/tg),
# head time t4 - 4 x layer.  dsv4 bench's own figure (head timed alone,
# layer time derived) is printed beside it.  A further line sets the
# layer times against memory: bytes of one layer ((b8 - b4) / 4 from dsv4
# bench's bytes per token) over the layer time, and the bandwidth probe of
# the same round; where llama.cpp's layers already stream near the probe,
# no engine can be much faster on this host.  The last line is
#   dsv4/llama.cpp: decode X.XXx, flash-equivalent decode Y.YYx, prefill Z.ZZx
set -e
ROUNDS=3; ATTEMPTS=; T=2; KEEP=0; N=32
while [ $# -gt 0 ]; do
    case $1 in
        --rounds) ROUNDS=$2; shift 2;;
        --attempts) ATTEMPTS=$2; shift 2;;
        --threads) T=$2; shift 2;;
        --gen) N=$2; shift 2;;
        --keep) KEEP=1; shift;;
        -h|--help) sed -n '2,49p' "$0"; exit 0;;
        *) echo "vs-llamacpp.sh: unknown argument $1" >&2; exit 2;;
    esac
done
REPO=$(cd "$(dirname "$0")/.." && pwd)
DSV4=${DSV4:-$REPO/build/dsv4}
W=${DSV4_BENCH_DIR:-/tmp/dsv4-vs-llamacpp}
PKG=node-llama-cpp@3.21.1
mkdir -p "$W"
[ -x "$DSV4" ] || { echo "build dsv4 first (make): $DSV4 missing" >&2; exit 1; }
log() { echo "[vs-llamacpp] $*" >&2; }

# ---- 1. llama.cpp ----------------------------------------------------------
LB=$W/llama/build/bin/llama-bench
if [ ! -x "$LB" ]; then
    mkdir -p "$W/llama" && cd "$W/llama"
    log "fetching $PKG"
    rm -f node-llama-cpp-*.tgz
    npm pack "$PKG" >/dev/null 2>&1
    TGZ=$(ls node-llama-cpp-*.tgz)
    want=$(npm view "$PKG" dist.integrity)
    got="sha512-$(openssl dgst -sha512 -binary "$TGZ" | base64 -w0)"
    if [ "$want" != "$got" ]; then echo "integrity mismatch: registry $want, tarball $got" >&2; exit 1; fi
    log "integrity ok: $got"
    rm -rf package src && tar xzf "$TGZ"
    git clone -q package/llama/gitRelease.bundle src
    log "llama.cpp $(cat package/llama/llama.cpp.info.json | tr -d ' \n'), building (CPU, this takes a while)"
    cmake -S src -B build -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON -DLLAMA_CURL=OFF \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DGGML_NATIVE=ON >cmake.log 2>&1
    cmake --build build -j "$(nproc)" --target llama-bench >build.log 2>&1 || { tail -20 build.log >&2; exit 1; }
    cd "$REPO"
fi

# ---- 2. models --------------------------------------------------------------
for L in 4 8; do
    G=$W/flash$L.gguf
    if [ ! -f "$G" ]; then
        log "generating the $L-layer Flash slice"
        "$DSV4" gen --preset flash --layers $L --experts 32 --seed 1 -q -o "$W/flash$L"
        log "converting it (mxfp4-moe)"
        "$DSV4" convert -m "$W/flash$L" -o "$G" --type mxfp4-moe --quiet
        [ "$KEEP" = 1 ] || rm -rf "$W/flash$L"
    fi
done

# Both engines read the files through the page cache.  Where it holds a file
# in 4 KiB folios (written here, or partly evicted and faulted back), one
# core streams it about 15% slower than from 2 MiB folios, and the 4- and
# 8-layer files can differ: read back any file dsv4 finds mostly in 4 KiB
# pages (DSV4_REREAD=1), once, before the rounds.
for L in 4 8; do
    G=$W/flash$L.gguf
    huge=$("$DSV4" bench -m "$G" --threads "$T" --ctx 0 --prompt 0 --gen 1 --bw-mb 64 --json 2>/dev/null |
           python3 -c 'import json,sys; print(json.load(sys.stdin).get("weights_hugepage_fraction", -1))')
    log "flash$L.gguf: $huge of it in 2 MiB pages"
    if python3 -c "import sys; sys.exit(0 if 0 <= float('$huge') < 0.9 else 1)"; then
        log "reading flash$L.gguf back into 2 MiB pages"
        DSV4_REREAD=1 "$DSV4" bench -m "$G" --threads "$T" --ctx 0 --prompt 0 --gen 1 --bw-mb 64 >/dev/null 2>&1
    fi
done

# ---- 3. decode rounds, 4. prefill rounds -------------------------------------
[ -n "$ATTEMPTS" ] || ATTEMPTS=$((4 * ROUNDS))
R=$W/results; rm -rf "$R"; mkdir -p "$R"
# steady A B: the two dsv4 bench JSONs of a round agree on bandwidth (15%)
# and placement (all round trips on one side of 150 ns)
steady() {
    python3 - "$1" "$2" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
bw = a['bandwidth_probes_gbs'] + b['bandwidth_probes_gbs']
rt = [x for x in a.get('core_round_trip_ns', []) + b.get('core_round_trip_ns', []) if x > 0]
sys.exit(0 if max(bw) <= 1.15 * min(bw) and len(set(x > 150 for x in rt)) <= 1 else 1)
PY
}
i=1; good=0
while [ $good -lt "$ROUNDS" ] && [ $i -le "$ATTEMPTS" ]; do
    log "decode round $i (steady so far: $good of $ROUNDS): dsv4 4 layers"
    "$DSV4" bench -m "$W/flash4.gguf" --threads "$T" --ctx 0 --prompt 0 --gen "$N" --bw-mb 256 --json \
        > "$R/d4_$i.json" 2>"$R/d4_$i.err"
    log "decode round $i: llama.cpp 4 layers"
    "$LB" -m "$W/flash4.gguf" -t "$T" -p 0 -n "$N" -r 1 -o json > "$R/l4_$i.json" 2>"$R/l4_$i.err"
    log "decode round $i: llama.cpp 8 layers"
    "$LB" -m "$W/flash8.gguf" -t "$T" -p 0 -n "$N" -r 1 -o json > "$R/l8_$i.json" 2>"$R/l8_$i.err"
    log "decode round $i: dsv4 8 layers"
    "$DSV4" bench -m "$W/flash8.gguf" --threads "$T" --ctx 0 --prompt 0 --gen "$N" --bw-mb 256 --json \
        > "$R/d8_$i.json" 2>"$R/d8_$i.err"
    if steady "$R/d4_$i.json" "$R/d8_$i.json"; then good=$((good + 1)); else log "round $i was not steady"; fi
    i=$((i + 1))
done
NDEC=$((i - 1))
i=1
while [ $i -le "$ROUNDS" ]; do
    log "prefill round $i/$ROUNDS: dsv4, llama.cpp pp512 on the 4-layer file"
    "$DSV4" bench -m "$W/flash4.gguf" --threads "$T" --ctx 0 --prompt 512 --gen 4 --bw-mb 256 --json \
        > "$R/dp_$i.json" 2>"$R/dp_$i.err"
    "$LB" -m "$W/flash4.gguf" -t "$T" -p 512 -n 0 -r 1 -o json > "$R/lp_$i.json" 2>"$R/lp_$i.err"
    i=$((i + 1))
done
python3 - "$R" "$NDEC" "$N" "$ROUNDS" <<'PY'
import json, statistics, sys
R, n, npf = sys.argv[1], int(sys.argv[2]), int(sys.argv[4])
med = statistics.median
def lb(path):
    rows = json.load(open(path))
    pp = [r['avg_ts'] for r in rows if r['n_prompt'] > 0 and r['n_gen'] == 0]
    tg = [r['avg_ts'] for r in rows if r['n_gen'] > 0 and r['n_prompt'] == 0]
    return (pp[0] if pp else None), (tg[0] if tg else None)
rounds = range(1, n + 1)
L4 = [lb('%s/l4_%d.json' % (R, i)) for i in rounds]
L8 = [lb('%s/l8_%d.json' % (R, i)) for i in rounds]
D4 = [json.load(open('%s/d4_%d.json' % (R, i))) for i in rounds]
D8 = [json.load(open('%s/d8_%d.json' % (R, i))) for i in rounds]
# A round is steady when its four bandwidth probes agree within 15% and
# its four round trips put the threads in the same place (one L3 below
# 150 ns): the 4- and 8-layer runs then met the same memory system, which
# the layer-time difference needs (the shell's steady() is the same test).
# Medians over the steady rounds (all rounds, with a warning, when none is).
def steady(a, b):
    bw = a['bandwidth_probes_gbs'] + b['bandwidth_probes_gbs']
    rt = a.get('core_round_trip_ns', []) + b.get('core_round_trip_ns', [])
    return max(bw) <= 1.15 * min(bw) and len(set(x > 150 for x in rt if x > 0)) <= 1
def place(a, b):
    rt = [x for x in a.get('core_round_trip_ns', []) + b.get('core_round_trip_ns', []) if x > 0]
    return '?' if not rt else 'one CCD' if all(x <= 150 for x in rt) else 'two CCDs' if all(x > 150 for x in rt) else 'moved'
keep = [k for k in range(n) if steady(D4[k], D8[k])]
nsteady = len(keep)
if not keep:
    print('warning: no round ran at one bandwidth level throughout; the medians below mix levels')
    keep = list(range(n))
l4, l8, d4, d8 = ([X[k] for k in keep] for X in (L4, L8, D4, D8))
# one method for both engines: layer and head time from the two slices,
# per round, then the median
def flash(tg4, tg8):
    t4, t8 = 1 / tg4, 1 / tg8
    layer = (t8 - t4) / 4
    head = t4 - 4 * layer
    return 1 / (43 * layer + head), layer, head
lf = [flash(a[1], b[1]) for a, b in zip(l4, l8)]
df = [flash(a['decode'][0]['tok_s'], b['decode'][0]['tok_s']) for a, b in zip(d4, d8)]
LP = [lb('%s/lp_%d.json' % (R, i))[0] for i in range(1, npf + 1)]
DP = [json.load(open('%s/dp_%d.json' % (R, i)))['prefill']['tok_s'] for i in range(1, npf + 1)]
l_pp, l_tg = med(LP), med(x[1] for x in l4)
d_pp, d_tg = med(DP), med(x['decode'][0]['tok_s'] for x in d4)
l_flash, d_flash = med(x[0] for x in lf), med(x[0] for x in df)
l_layer, d_layer = med(x[1] for x in lf), med(x[1] for x in df)
# bytes of one layer (the same file for both engines) and the probes
lbytes = med((b['bytes_per_token_ctx0'] - a['bytes_per_token_ctx0']) / 4 for a, b in zip(d4, d8))
bw = [max(x['bandwidth_gbs'] for x in (a, b)) for a, b in zip(d4, d8)]
print('decode rounds: %d run, %d steady; threads: %s, %d generated tokens per run; decode medians over round%s %s; '
      'prefill: %d rounds' % (n, nsteady, d4[0].get('threads'), int(sys.argv[3]), 's' if len(keep) > 1 else '',
                              ', '.join(str(k + 1) for k in keep), npf))
print('llama.cpp  4 layers: pp512 %.2f tok/s (rounds: %s), tg %.3f tok/s;  8 layers: tg %.3f tok/s' % (
    l_pp, ' '.join('%.1f' % x for x in LP), l_tg, med(x[1] for x in l8)))
print('llama.cpp  layer %.2f ms, head %.2f ms -> flash-equivalent decode %.3f tok/s' %
      (1e3 * l_layer, 1e3 * med(x[2] for x in lf), l_flash))
print('dsv4       4 layers: pp512 %.2f tok/s (rounds: %s), decode %.3f tok/s;  8 layers: decode %.3f tok/s (kernels %s)' %
      (d_pp, ' '.join('%.1f' % x for x in DP), d_tg, med(x['decode'][0]['tok_s'] for x in d8), d4[0].get('kernels')))
print('dsv4       layer %.2f ms, head %.2f ms -> flash-equivalent decode %.3f tok/s (dsv4 bench alone: layer %.2f ms, head %.2f ms, %.3f tok/s)' %
      (1e3 * d_layer, 1e3 * med(x[2] for x in df), d_flash, med(x['decode'][0]['layer_ms'] for x in d4),
       med(x['decode'][0]['head_ms'] for x in d4), med(x['decode'][0]['flash_equiv_tok_s'] for x in d4)))
print('memory: one layer %.1f MB; bandwidth probe %.1f GB/s (median of rounds, %.1f-%.1f); layers stream at llama.cpp %.1f GB/s (%.0f%%), dsv4 %.1f GB/s (%.0f%%)' %
      (lbytes / 1e6, med(bw), min(bw), max(bw), lbytes / l_layer / 1e9, 100 * lbytes / l_layer / 1e9 / med(bw),
       lbytes / d_layer / 1e9, 100 * lbytes / d_layer / 1e9 / med(bw)))
print('per decode round (llama tg4/tg8, dsv4 tg4/tg8, probes GB/s, placement):', '; '.join(
    '%d: %.3f/%.3f, %.3f/%.3f, %s, %s' % (k + 1, a[1], b[1], c['decode'][0]['tok_s'], e['decode'][0]['tok_s'],
                                                '/'.join('%.0f' % x for x in c['bandwidth_probes_gbs'] + e['bandwidth_probes_gbs']),
                                                place(c, e))
    for k, a, b, c, e in zip(range(n), L4, L8, D4, D8)))
print('dsv4/llama.cpp: decode %.2fx, flash-equivalent decode %.2fx, prefill %.2fx' % (d_tg / l_tg, d_flash / l_flash, d_pp / l_pp))
PY
