#!/bin/sh
# vs-llamacpp.sh - dsv4 and llama.cpp side by side on the same GGUF file.
#
#   bench/vs-llamacpp.sh [--rounds N] [--threads T] [--keep]
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
# 3. Rounds, alternating the engines on the same files, T threads each:
#      llama-bench -p 512 -n 16 on the 4-layer file (pp512, tg16)
#      llama-bench -p 0 -n 16 on the 8-layer file (tg16)
#      dsv4 bench --ctx 0 --prompt 512 --gen 16 --json on the 4-layer file
#    and the medians over the rounds are compared.
#
# Flash-equivalent decode (a 43-layer model): per token 43 x layer time +
# head time, per engine, from figures measured in the same run: dsv4 bench
# times the head alone and derives the mean layer time; for llama.cpp the
# layer time is (t8 - t4) / 4 from the 4- and 8-layer files (t = 1/tg) and
# the head time t4 - 4 x layer.  The last line is
#   dsv4/llama.cpp: decode X.XXx, flash-equivalent decode Y.YYx, prefill Z.ZZx
set -e
ROUNDS=3; T=2; KEEP=0
while [ $# -gt 0 ]; do
    case $1 in
        --rounds) ROUNDS=$2; shift 2;;
        --threads) T=$2; shift 2;;
        --keep) KEEP=1; shift;;
        -h|--help) sed -n '2,30p' "$0"; exit 0;;
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

# ---- 3. rounds ----------------------------------------------------------------
R=$W/results; rm -rf "$R"; mkdir -p "$R"
i=1
while [ $i -le "$ROUNDS" ]; do
    log "round $i/$ROUNDS: llama.cpp 4 layers"
    "$LB" -m "$W/flash4.gguf" -t "$T" -p 512 -n 16 -r 1 -o json > "$R/l4_$i.json" 2>"$R/l4_$i.err"
    log "round $i/$ROUNDS: llama.cpp 8 layers"
    "$LB" -m "$W/flash8.gguf" -t "$T" -p 0 -n 16 -r 1 -o json > "$R/l8_$i.json" 2>"$R/l8_$i.err"
    log "round $i/$ROUNDS: dsv4"
    "$DSV4" bench -m "$W/flash4.gguf" --threads "$T" --ctx 0 --prompt 512 --gen 16 --bw-mb 256 --json \
        > "$R/d_$i.json" 2>"$R/d_$i.err"
    i=$((i + 1))
done

python3 - "$R" "$ROUNDS" <<'PY'
import json, statistics, sys
R, n = sys.argv[1], int(sys.argv[2])
med = statistics.median
def lb(path):
    rows = json.load(open(path))
    pp = [r['avg_ts'] for r in rows if r['n_prompt'] > 0 and r['n_gen'] == 0]
    tg = [r['avg_ts'] for r in rows if r['n_gen'] > 0 and r['n_prompt'] == 0]
    return (pp[0] if pp else None), (tg[0] if tg else None)
l4 = [lb('%s/l4_%d.json' % (R, i)) for i in range(1, n + 1)]
l8 = [lb('%s/l8_%d.json' % (R, i)) for i in range(1, n + 1)]
d = [json.load(open('%s/d_%d.json' % (R, i))) for i in range(1, n + 1)]
l_pp = med(x[0] for x in l4); l_tg4 = med(x[1] for x in l4); l_tg8 = med(x[1] for x in l8)
# llama.cpp per-layer and head time from the two slices, per round, then median
def flash_l(a, b):
    t4, t8 = 1 / a, 1 / b
    layer = (t8 - t4) / 4
    head = t4 - 4 * layer
    return 1 / (43 * layer + head), layer, head
lf = [flash_l(a[1], b[1]) for a, b in zip(l4, l8)]
l_flash = med(x[0] for x in lf)
d_tg = med(x['decode'][0]['tok_s'] for x in d)
d_pp = med(x['prefill']['tok_s'] for x in d)
d_flash = med(x['decode'][0]['flash_equiv_tok_s'] for x in d)
print('rounds: %d, threads: %s' % (n, d[0].get('threads')))
print('llama.cpp  4 layers: pp512 %.2f tok/s, tg16 %.3f tok/s;  8 layers: tg16 %.3f tok/s' % (l_pp, l_tg4, l_tg8))
print('llama.cpp  layer %.2f ms, head %.2f ms -> flash-equivalent decode %.3f tok/s' %
      (1e3 * med(x[1] for x in lf), 1e3 * med(x[2] for x in lf), l_flash))
print('dsv4       4 layers: pp512 %.2f tok/s, decode %.3f tok/s; layer %.2f ms, head %.2f ms -> flash-equivalent %.3f tok/s (kernels %s)' %
      (d_pp, d_tg, med(x['decode'][0]['layer_ms'] for x in d), med(x['decode'][0]['head_ms'] for x in d), d_flash, d[0].get('kernels')))
print('per round (llama pp/tg4/tg8, dsv4 pp/tg):', '; '.join('%.1f/%.3f/%.3f, %.1f/%.3f' % (a[0], a[1], b[1], c['prefill']['tok_s'], c['decode'][0]['tok_s'])
                                                       for a, b, c in zip(l4, l8, d)))
print('dsv4/llama.cpp: decode %.2fx, flash-equivalent decode %.2fx, prefill %.2fx' % (d_tg / l_tg4, d_flash / l_flash, d_pp / l_pp))
PY
