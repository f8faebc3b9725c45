#!/bin/sh
# t_tokenize.sh - the CLI contracts of `dsv4 tokenize` / `dsv4 detokenize`:
# exact output for a few inputs, --jsonl, -m DIR, and one-line errors with a
# non-zero status for bad inputs.
DSV4=${DSV4:-build/dsv4}
T=data/tokenizer.json
pass=0; fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

ok()  { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $1"; }
# same NAME EXPECTED ACTUAL
same() { if [ "$2" = "$3" ]; then ok; else bad "$1: expected [$2] got [$3]"; fi; }
# fails NAME CMD...: non-zero exit and exactly one line on stderr
fails() {
    name=$1; shift
    "$@" >"$tmp/out" 2>"$tmp/err"; rc=$?
    lines=$(wc -l <"$tmp/err")
    if [ "$rc" -ne 0 ] && [ "$lines" -eq 1 ] && [ ! -s "$tmp/out" ]; then ok
    else bad "$name: rc=$rc, $lines stderr lines: $(head -c 200 "$tmp/err")"; fi
}

same "tokenize TEXT" '[19923,14,2058,3,223,6895,201,10930,2562]' "$("$DSV4" tokenize -t $T 'Hello, world! 123
second line')"
same "tokenize specials" '[128803,30594,128804,128821,36101,128822,7624,1]' \
    "$("$DSV4" tokenize -t $T '<｜User｜>你好<｜Assistant｜><think>推理</think>答案<｜end▁of▁sentence｜>')"
same "tokenize -m DIR" '[19923,3]' "$("$DSV4" tokenize -m data 'Hello!')"
same "tokenize empty" '[]' "$("$DSV4" tokenize -t $T '')"
printf 'Hello! 毕老师！1 + 1 = 2 ĠÑĤÐ²ÑĬÑĢ' >"$tmp/in.txt"
same "tokenize --file" '[19923,3,223,5464,5008,1175,19,940,223,19,438,223,20,6113,257,76589,131,100,76032,1628,76589,131,108,76589,131,98]' \
    "$("$DSV4" tokenize -t $T --file "$tmp/in.txt")"
# Exact bytes, trailing newline included.
"$DSV4" tokenize -t $T 'Hello' >"$tmp/o1"
printf '[19923]\n' >"$tmp/e1"
if cmp -s "$tmp/o1" "$tmp/e1"; then ok; else bad "tokenize output bytes"; fi

printf '{"text":"Hello, world! 123\\nsecond line"}\n{"text":""}\n{"id":7,"text":"<think>"}\n' >"$tmp/in.jsonl"
printf '{"ids":[19923,14,2058,3,223,6895,201,10930,2562]}\n{"ids":[]}\n{"ids":[128821]}\n' >"$tmp/e2"
"$DSV4" tokenize -t $T --jsonl "$tmp/in.jsonl" >"$tmp/o2"
if cmp -s "$tmp/o2" "$tmp/e2"; then ok; else bad "--jsonl: $(cat "$tmp/o2")"; fi
# The whole golden file through --jsonl gives its ids, line by line.
G=tests/data/tokenizer/golden-encode.jsonl
"$DSV4" tokenize -t $T --jsonl $G >"$tmp/o3"
sed 's/.*"ids":\(\[[^]]*\]\).*/\1/' $G >"$tmp/g.ids"
sed 's/{"ids":\(.*\)}/\1/' "$tmp/o3" >"$tmp/o3.ids"
if [ "$(wc -l <"$tmp/o3")" -eq 469 ] && cmp -s "$tmp/g.ids" "$tmp/o3.ids"; then ok; else bad "--jsonl golden file differs"; fi

"$DSV4" detokenize -t $T 19923,14,2058 >"$tmp/o4"
printf 'Hello, world' >"$tmp/e4"
if cmp -s "$tmp/o4" "$tmp/e4"; then ok; else bad "detokenize 1,2,3 form: $(cat "$tmp/o4")"; fi
same "detokenize JSON array" '<｜User｜>你好' "$("$DSV4" detokenize -t $T '[128803, 30594]')"
same "detokenize empty" '' "$("$DSV4" detokenize -t $T '[]')"
# Round trip through both commands, invalid UTF-8 included.
printf 'caf\351 \344\275 ok\r\n' >"$tmp/raw"
ids=$("$DSV4" tokenize -t $T --file "$tmp/raw")
"$DSV4" detokenize -t $T "$ids" >"$tmp/raw2"
if cmp -s "$tmp/raw" "$tmp/raw2"; then ok; else bad "byte round trip"; fi

fails "missing tokenizer file" "$DSV4" tokenize -t "$tmp/nope.json" hi
printf '{"model": [1,' >"$tmp/broken.json"
fails "malformed tokenizer JSON" "$DSV4" tokenize -t "$tmp/broken.json" hi
fails "no -t/-m" "$DSV4" tokenize hi
fails "missing --file" "$DSV4" tokenize -t $T --file "$tmp/nope.txt"
fails "id out of range" "$DSV4" detokenize -t $T 1,129280
fails "negative id" "$DSV4" detokenize -t $T '[-1]'
fails "bad id list" "$DSV4" detokenize -t $T '1,,x'
printf '{"text": 3}\n' >"$tmp/bad.jsonl"
fails "jsonl without text" "$DSV4" tokenize -t $T --jsonl "$tmp/bad.jsonl"
printf '{"text": "a"\n' >"$tmp/bad2.jsonl"
fails "malformed jsonl" "$DSV4" tokenize -t $T --jsonl "$tmp/bad2.jsonl"
"$DSV4" tokenize --help >/dev/null 2>&1 && ok || bad "--help exits 0"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
