#!/bin/sh
# Builds every libFuzzer harness fuzz/fuzz_<name>.c against the library
# (clang, ASan + UBSan) and runs each for FUZZ_SECONDS (default 60) with its
# corpus in build-fuzz/corpus/<name> (seeded from fuzz/seeds/<name>/ if
# present).  Usage: make fuzz [FUZZ_SECONDS=600] [FUZZ_ONLY=name]
set -e
SECS=${FUZZ_SECONDS:-60}
OUT=build-fuzz
CC=${FUZZ_CC:-clang}
FLAGS="-std=c11 -g -O1 -D_GNU_SOURCE -pthread -Iinclude -Isrc -fsanitize=fuzzer-no-link,address,undefined"
LIBS="-ljansson -lmicrohttpd -lcurl -lutf8proc -lpcre2-8 -lm"
mkdir -p "$OUT/obj" "$OUT/corpus"
objs=""
for f in $(ls src/*/*.c | grep -v '^src/cli/'); do
    o="$OUT/obj/$(echo "$f" | tr / _ | sed 's/\.c$/.o/')"
    if [ ! -f "$o" ] || [ "$f" -nt "$o" ]; then $CC $FLAGS -c "$f" -o "$o"; fi
    objs="$objs $o"
done
for f in $(ls src/*/*.S 2>/dev/null); do
    o="$OUT/obj/$(echo "$f" | tr / _ | sed 's/\.S$/.o/')"
    $CC $FLAGS -c "$f" -o "$o"; objs="$objs $o"
done
status=0
for h in fuzz/fuzz_*.c; do
    name=$(basename "$h" .c | sed 's/^fuzz_//')
    [ -n "$FUZZ_ONLY" ] && [ "$FUZZ_ONLY" != "$name" ] && continue
    $CC $FLAGS -fsanitize=fuzzer -o "$OUT/fuzz_$name" "$h" $objs $LIBS
    mkdir -p "$OUT/corpus/$name"
    seeds=""; [ -d "fuzz/seeds/$name" ] && seeds="fuzz/seeds/$name"
    echo "== fuzz_$name for ${SECS}s"
    if ! "$OUT/fuzz_$name" -max_total_time="$SECS" -print_final_stats=1 "$OUT/corpus/$name" $seeds \
         > "$OUT/fuzz_$name.log" 2>&1; then
        echo "fuzz_$name FOUND A PROBLEM: see $OUT/fuzz_$name.log"; tail -40 "$OUT/fuzz_$name.log"; status=1
    else
        grep -E "stat::number_of_executed_units|cov:" "$OUT/fuzz_$name.log" | tail -2
    fi
done
exit $status
