#!/bin/sh
# make bench: kernel microbenchmarks, then `dsv4 bench` on a generated
# V4-Flash slice (4 layers, 32 experts) when `dsv4 gen` is available.
#   BENCH_THREADS  threads (default: all online CPUs)
#   BENCH_MODEL    an existing model directory to bench instead
#   BENCH_DIR      where the slice is generated (default /tmp/dsv4-flash4)
BUILD=${BUILD:-build}
DSV4=${DSV4:-$BUILD/dsv4}
TH=${BENCH_THREADS:+--threads $BENCH_THREADS}
set -e
echo "== kernel microbenchmarks"
"$BUILD/bench/bench_kernels" $TH
"$BUILD/bench/bench_attention"
MODEL=${BENCH_MODEL:-}
if [ -z "$MODEL" ]; then
    MODEL=${BENCH_DIR:-/tmp/dsv4-flash4}
    if [ ! -f "$MODEL/config.json" ]; then
        echo "== generating the Flash slice in $MODEL"
        if ! "$DSV4" gen --preset flash --layers 4 --experts 32 --seed 1 -o "$MODEL"; then
            echo "dsv4 gen unavailable: skipping the model benchmark"; exit 0
        fi
    fi
fi
echo "== dsv4 bench -m $MODEL"
"$DSV4" bench -m "$MODEL" $TH --ctx 0,2048,16384,65536 --prompt 512 --fill random --json
