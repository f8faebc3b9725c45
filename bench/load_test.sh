#!/bin/sh
# load_test.sh - load test of `dsv4 serve` (not part of make test).
#
#   bench/load_test.sh [-m DIR] [--requests 1000] [--concurrency 8] [--tokens 16]
#
# 1. throughput with 1, 4 and 8 concurrent streams (batching gain);
# 2. N requests at concurrency C (chat, streamed chat, completions, messages,
#    json_schema mixed): failures counted, server RSS sampled every second;
# 3. TTFT of the second turn of a long conversation with and without prefix
#    reuse (a second server with --cache-slots 0).
# Prints a summary; exit status 1 if any request failed.
DSV4=${DSV4:-build/dsv4}
MODEL_ARG=
N=1000; C=8; TOK=16; CTX=4096
while [ $# -gt 0 ]; do
    case "$1" in
        -m) MODEL_ARG="-m $2"; shift 2;;
        --requests) N=$2; shift 2;;
        --concurrency) C=$2; shift 2;;
        --tokens) TOK=$2; shift 2;;
        *) echo "usage: $0 [-m DIR] [--requests N] [--concurrency C] [--tokens T]"; exit 2;;
    esac
done
tmp=$(mktemp -d /tmp/dsv4-load.XXXXXX)
pids=
cleanup() { for p in $pids; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

start() {   # start NAME ARGS...: starts a server, sets $port and $spid
    name=$1; shift
    # shellcheck disable=SC2086
    "$DSV4" serve $MODEL_ARG --port 0 --ctx $CTX "$@" >"$tmp/$name.log" 2>&1 &
    spid=$!
    pids="$pids $spid"
    port=
    for i in $(seq 1 600); do
        port=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\).*|\1|p' "$tmp/$name.log")
        [ -n "$port" ] && return 0
        sleep 0.2
    done
    cat "$tmp/$name.log"; exit 1
}

start main --parallel 8
MAIN_PORT=$port; MAIN_PID=$spid
start nocache --parallel 8 --cache-slots 0
NOCACHE_PORT=$port

python3 - "$MAIN_PORT" "$MAIN_PID" "$NOCACHE_PORT" "$N" "$C" "$TOK" <<'EOF'
import json, sys, threading, time, urllib.request, random

port, pid, nport, N, C, TOK = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])

def post(p, path, body, stream=False):
    req = urllib.request.Request(f"http://127.0.0.1:{p}{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        if stream:
            n = 0
            for line in r:
                if line.startswith(b"data: {") or line.startswith(b"event:"):
                    n += 1
            return r.status, n
        return r.status, json.loads(r.read())

def rss_mb():
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS:"):
            return int(l.split()[1]) / 1024.0
    return 0.0

# 1. throughput at 1, 4, 8 concurrent streams
print("== throughput (each stream generates 48 tokens)")
base = None
for conc in (1, 4, 8):
    toks = [0]; lock = threading.Lock()
    def one(i):
        st, r = post(port, "/v1/chat/completions", {"messages": [{"role": "user", "content": f"Stream {i} {random.random()}"}],
                                                   "max_tokens": 48, "seed": i})
        with lock: toks[0] += r["usage"]["completion_tokens"]
    t0 = time.time()
    th = [threading.Thread(target=one, args=(i,)) for i in range(conc)]
    [t.start() for t in th]; [t.join() for t in th]
    dt = time.time() - t0
    tps = toks[0] / dt
    base = base or tps
    print(f"  {conc} concurrent: {toks[0]} tokens in {dt:.2f} s = {tps:.1f} tok/s ({tps / base:.2f}x of 1 stream)")

# 2. N requests at concurrency C, mixed endpoints; RSS sampled
print(f"== {N} requests at concurrency {C}, max_tokens {TOK}")
schema = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"enum": ["x", "y"]}}, "required": ["a", "b"]}
kinds = [
    ("/v1/chat/completions", lambda i: {"messages": [{"role": "user", "content": f"Request {i}"}], "max_tokens": TOK}, False),
    ("/v1/chat/completions", lambda i: {"messages": [{"role": "user", "content": f"Stream {i}"}], "max_tokens": TOK, "stream": True}, True),
    ("/v1/completions", lambda i: {"prompt": f"Text {i}", "max_tokens": TOK}, False),
    ("/v1/messages", lambda i: {"messages": [{"role": "user", "content": f"Msg {i}"}], "max_tokens": TOK}, False),
    ("/v1/chat/completions", lambda i: {"messages": [{"role": "user", "content": f"JSON {i}"}], "max_tokens": TOK + 16,
                                        "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}}, False),
]
failures = []; done = [0]; nxt = [0]; lock = threading.Lock(); rss = []; stop = [False]
def sampler():
    while not stop[0]:
        rss.append(rss_mb()); time.sleep(1.0)
def worker():
    while True:
        with lock:
            i = nxt[0]; nxt[0] += 1
        if i >= N: return
        path, body, stream = kinds[i % len(kinds)]
        try:
            st, r = post(port, path, body(i), stream)
            if st != 200: failures.append((i, st))
            elif path == "/v1/chat/completions" and not stream and "response_format" in body(i):
                o = json.loads(r["choices"][0]["message"]["content"])
                if not (isinstance(o.get("a"), int) and o.get("b") in ("x", "y")): failures.append((i, "invalid json"))
        except Exception as e:
            failures.append((i, repr(e)))
        with lock: done[0] += 1
t0 = time.time()
st = threading.Thread(target=sampler); st.start()
ws = [threading.Thread(target=worker) for _ in range(C)]
[w.start() for w in ws]; [w.join() for w in ws]
stop[0] = True; st.join()
dt = time.time() - t0
q = len(rss) // 4 or 1
print(f"  {done[0]} requests in {dt:.1f} s ({done[0] / dt:.1f} req/s), failed: {len(failures)} {failures[:5]}")
print(f"  server RSS MiB: first {rss[0]:.0f}, max {max(rss):.0f}, mean of first quarter {sum(rss[:q]) / q:.0f}, "
      f"mean of last quarter {sum(rss[-q:]) / q:.0f} ({len(rss)} samples)")
m = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
for l in m.split("\n"):
    if l.startswith(("dsv4_decode_steps_total", "dsv4_decode_sequences_total", "dsv4_time_to_first_token_seconds_sum",
                     "dsv4_time_to_first_token_seconds_count", "dsv4_requests_cancelled_total")):
        print("  " + l)

# 3. TTFT of the second turn of a long conversation, with and without reuse
print("== second turn of a long conversation (max_tokens 1 = time to first token)")
hist = [{"role": "system", "content": "You are a helpful assistant. " * 40}]
for k in range(6):
    hist.append({"role": "user", "content": f"Question {k}: " + "tell me more about the history of computing. " * 12})
    hist.append({"role": "assistant", "content": "Here is a long answer. " * 20})
for name, p in (("with reuse", port), ("without reuse", nport)):
    first = hist + [{"role": "user", "content": "First new question?"}]
    t0 = time.time(); _, r1 = post(p, "/v1/chat/completions", {"messages": first, "max_tokens": 8, "seed": 1, "temperature": 0}); t1 = time.time()
    reply = r1["choices"][0]["message"]["content"]
    second = first + [{"role": "assistant", "content": reply}, {"role": "user", "content": "And a follow-up?"}]
    t2 = time.time(); _, r2 = post(p, "/v1/chat/completions", {"messages": second, "max_tokens": 1}); t3 = time.time()
    print(f"  {name}: turn 1 {r1['usage']['prompt_tokens']} prompt tokens {t1 - t0:.2f} s (8 tokens); "
          f"turn 2 {r2['usage']['prompt_tokens']} prompt tokens, {r2['usage']['prompt_tokens_details']['cached_tokens']} cached, "
          f"TTFT {t3 - t2:.3f} s")
sys.exit(1 if failures else 0)
EOF
