#!/bin/sh
# t_chat.sh - the `dsv4 chat-template` and `dsv4 chat-parse` command-line
# contracts against the official encoder's golden data (tests/data/chat):
#   chat-template --jsonl  every prompt and id of golden-encode.jsonl
#   chat-template --messages M.json [--mode ...] [--reasoning-effort ...]
#                          [--no-drop-thinking] [--ids]   the same prompts
#   chat-parse --jsonl     every result / error of golden-parse.jsonl
# JSON outputs are compared as JSON values (python3).
DSV4=${DSV4:-build/dsv4}
G=tests/data/chat
TOK=data/tokenizer.json
pass=0; fail=0
ok()  { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
# (the system python starts much faster than a pyenv shim)
PY=python3; [ -x /usr/bin/python3 ] && PY=/usr/bin/python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --ids, with -m DIR (reads DIR/tokenizer.json)
printf '[{"role":"user","content":"hi"}]' > "$tmp/m.json"
have_tok=1; tokopt="-t $TOK"
if "$DSV4" chat-template -m data --messages "$tmp/m.json" --ids > "$tmp/m.ids" &&
   [ "$(cat "$tmp/m.ids")" = "[0, 128803, 6366, 128804, 128822]" ]; then ok; else bad "chat-template -m data --ids"; fi

# 1. --jsonl over the golden conversations.
if "$DSV4" chat-template $tokopt --jsonl "$G/golden-encode.jsonl" > "$tmp/enc.out"; then ok; else bad "chat-template --jsonl exit status"; fi
$PY - "$G/golden-encode.jsonl" "$tmp/enc.out" "$have_tok" > "$tmp/enc.res" <<'EOF'
import json, sys
gold = [json.loads(l) for l in open(sys.argv[1], encoding='utf-8')]
out = [json.loads(l) for l in open(sys.argv[2], encoding='utf-8')]
have_tok = sys.argv[3] == '1'
if len(gold) != len(out): print('FAIL line count %d != %d' % (len(out), len(gold)))
for g, o in zip(gold, out):
    if o.get('prompt') != g['prompt']: print('FAIL prompt', g['name'])
    elif have_tok and o.get('ids') != g['ids']: print('FAIL ids', g['name'])
    else: print('ok', g['name'])
EOF
p=$(grep -c '^ok' "$tmp/enc.res"); f=$(grep -c '^FAIL' "$tmp/enc.res")
pass=$((pass + p)); fail=$((fail + f)); grep '^FAIL' "$tmp/enc.res"
[ "$p" -eq 68 ] && ok || bad "expected 68 encode cases, $p passed"

# 2. --messages with the options as flags, one golden case at a time.
$PY - "$G/golden-encode.jsonl" "$tmp" <<'EOF'
import json, sys
for i, l in enumerate(open(sys.argv[1], encoding='utf-8')):
    c = json.loads(l)
    if 'context' in c or c.get('add_default_bos_token') is False: continue
    d = '%s/case%02d' % (sys.argv[2], i)
    json.dump(c['messages'], open(d + '.messages.json', 'w', encoding='utf-8'), ensure_ascii=False)
    open(d + '.prompt', 'w', encoding='utf-8', newline='').write(c['prompt'])
    json.dump(c['ids'], open(d + '.ids', 'w'))
    args = ['--mode', c['thinking_mode']]
    if c.get('reasoning_effort'): args += ['--reasoning-effort', c['reasoning_effort']]
    if c.get('drop_thinking') is False: args += ['--no-drop-thinking']
    open(d + '.args', 'w').write(' '.join(args))
EOF
for m in "$tmp"/case*.messages.json; do
    base=${m%.messages.json}
    # shellcheck disable=SC2046
    if "$DSV4" chat-template --messages "$m" $(cat "$base.args") > "$base.out" &&
       cmp -s "$base.out" "$base.prompt"; then ok; else bad "chat-template --messages $(basename "$base") $(cat "$base.args")"; fi
    # --ids on a sample (loading the tokenizer takes a moment; --jsonl
    # above already checked every case's ids)
    case "$base" in *[0])
        if [ "$have_tok" = 1 ]; then
            "$DSV4" chat-template -t "$TOK" --messages "$m" $(cat "$base.args") --ids > "$base.idsout" 2>/dev/null
        fi;;
    *) rm -f "$base.ids";;
    esac
done
if [ "$have_tok" = 1 ]; then
    $PY - "$tmp" > "$tmp/ids.res" <<'EOF'
import glob, json, sys
for f in sorted(glob.glob(sys.argv[1] + '/case*.ids')):
    try: same = json.load(open(f + 'out')) == json.load(open(f))
    except Exception: same = False
    print('ok' if same else 'FAIL chat-template --ids', f)
EOF
    p=$(grep -c '^ok' "$tmp/ids.res"); f=$(grep -c '^FAIL' "$tmp/ids.res")
    pass=$((pass + p)); fail=$((fail + f)); grep '^FAIL' "$tmp/ids.res"
fi

# 3. chat-parse --jsonl over the golden outputs.
if "$DSV4" chat-parse --jsonl "$G/golden-parse.jsonl" > "$tmp/parse.out"; then ok; else bad "chat-parse --jsonl exit status"; fi
$PY - "$G/golden-parse.jsonl" "$tmp/parse.out" > "$tmp/parse.res" <<'EOF'
import json, sys
gold = [json.loads(l) for l in open(sys.argv[1], encoding='utf-8')]
out = [json.loads(l) for l in open(sys.argv[2], encoding='utf-8')]
if len(gold) != len(out): print('FAIL line count')
for g, o in zip(gold, out):
    want = {'result': g['result']} if 'result' in g else {'error': g['error']}
    keys_ok = 'result' not in o or list(o['result']) == ['role', 'content', 'reasoning_content', 'tool_calls']
    print(('ok' if o == want and keys_ok else 'FAIL parse'), g['name'])
EOF
p=$(grep -c '^ok' "$tmp/parse.res"); f=$(grep -c '^FAIL' "$tmp/parse.res")
pass=$((pass + p)); fail=$((fail + f)); grep '^FAIL' "$tmp/parse.res"
[ "$p" -eq 43 ] && ok || bad "expected 43 parse cases, $p passed"

# 4. chat-parse on one text from stdin; bad usage is an error.
printf 'Hi.<\357\275\234end\342\226\201of\342\226\201sentence\357\275\234>' | "$DSV4" chat-parse > "$tmp/one.out" &&
    grep -q '"content": "Hi."' "$tmp/one.out" && ok || bad "chat-parse stdin"
printf 'no eos' | "$DSV4" chat-parse > /dev/null && bad "chat-parse should fail without EOS" || ok
"$DSV4" chat-template --mode bogus --messages "$tmp/m.json" > /dev/null 2>&1 && bad "bad --mode accepted" || ok
printf '[{"role":"developer","content":""}]' > "$tmp/dev.json"
"$DSV4" chat-template --messages "$tmp/dev.json" > /dev/null 2> "$tmp/dev.err" && bad "empty developer accepted" || ok
grep -q 'AssertionError: Invalid message for role `developer`' "$tmp/dev.err" && ok || bad "developer error message"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
