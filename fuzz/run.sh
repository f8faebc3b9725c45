#!/bin/sh
# fuzz/run.sh - build and run the libFuzzer harnesses (fuzz/fuzz_<name>.c).
#
#   sh fuzz/run.sh                 every harness listed below, FUZZ_SECONDS each
#   sh fuzz/run.sh tokenizer       just one
#   FUZZ_SECONDS=300 sh fuzz/run.sh
#
# Each harness is linked against the library sources (src/*/*.c except
# src/cli) built with clang -fsanitize=fuzzer,address,undefined into
# build-fuzz/.  Corpora live in build-fuzz/corpus/<name>/ and persist
# between runs.  Add one `run_fuzzer <name> [seed files...]` line per harness.
set -e
CC=${FUZZ_CC:-clang}
SECS=${FUZZ_SECONDS:-60}
OUT=build-fuzz
FLAGS="-std=c11 -O1 -g -D_GNU_SOURCE -pthread -Iinclude -Isrc -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined"
LIBS="-ljansson -lmicrohttpd -lcurl -lutf8proc -lpcre2-8 -lm"
ONLY=$1
mkdir -p "$OUT"

build_lib() {
    [ -f "$OUT/libfuzzdeps.a" ] && [ -z "$(find src -name '*.c' -newer "$OUT/libfuzzdeps.a" | head -1)" ] && return
    objs=""
    for f in $(ls src/*/*.c | grep -v '^src/cli/'); do
        o="$OUT/$(echo "$f" | tr / _).o"
        # -fsanitize=fuzzer-no-link: instrument the library without a main().
        $CC $(echo "$FLAGS" | sed 's/-fsanitize=fuzzer,/-fsanitize=fuzzer-no-link,/') -c "$f" -o "$o"
        objs="$objs $o"
    done
    rm -f "$OUT/libfuzzdeps.a"
    ar rcs "$OUT/libfuzzdeps.a" $objs
}

run_fuzzer() {
    name=$1; shift
    [ -n "$ONLY" ] && [ "$ONLY" != "$name" ] && return 0
    build_lib
    $CC $FLAGS -o "$OUT/fuzz_$name" "fuzz/fuzz_$name.c" "$OUT/libfuzzdeps.a" $LIBS
    mkdir -p "$OUT/corpus/$name"
    for seed in "$@"; do [ -f "$seed" ] && cp "$seed" "$OUT/corpus/$name/" || true; done
    echo "== fuzz_$name for ${SECS}s"
    log="$OUT/fuzz_$name.log"
    status=0
    "$OUT/fuzz_$name" -max_total_time="$SECS" -max_len=4096 -timeout=10 -artifact_prefix="$OUT/" \
        "$OUT/corpus/$name" >"$log" 2>&1 || status=$?
    grep -E "cov:" "$log" | tail -1
    grep -E "^Done|ERROR|SUMMARY|artifact" "$log" | tail -4
    [ "$status" -eq 0 ] || { echo "fuzz_$name FAILED (log: $log)"; exit 1; }
}

run_fuzzer tokenizer tests/data/tokenizer/README.md tests/data/chat/README.md
