#!/bin/sh
# gen_check.sh - not part of `make test` (writes ~3 GB): generates the
# presets with `dsv4 gen` and checks with the engine that each gives finite
# logits with a healthy spread (std ~2-3), including a V4-Flash slice with
# full per-layer shapes.  Usage: tools/gen_check.sh [WORKDIR]
set -e
DSV4=${DSV4:-build/dsv4}
W=${1:-$(mktemp -d /tmp/dsv4-gen-check.XXXXXX)}
ids=$(awk 'BEGIN { srand(1); for (i = 0; i < 24; i++) printf "%s%d", i ? "," : "", int(rand() * 1000) }')
stats() {   # logits safetensors -> finite/std summary (python3, no numpy)
python3 - "$1" <<'PY'
import json, math, struct, sys
b = open(sys.argv[1], 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n])
v = h['logits']; R, V = v['shape']; o = v['data_offsets']
L = struct.unpack('<%df' % (R * V), b[8 + n + o[0]:8 + n + o[1]])
bad = sum(1 for x in L if not math.isfinite(x)); sd = []
for r in range(R):
    row = L[r * V:(r + 1) * V]; m = sum(row) / V; sd.append(math.sqrt(sum((x - m) ** 2 for x in row) / V))
print('  %d rows, %d non-finite, logit std %.2f..%.2f' % (R, bad, min(sd), max(sd)))
sys.exit(1 if bad or min(sd) < 1.0 or max(sd) > 6.0 else 0)
PY
}
check() {   # name, gen args...
    name=$1; shift
    echo "== $name: dsv4 gen $*"
    "$DSV4" gen -q "$@" -o "$W/$name"
    "$DSV4" info -m "$W/$name" | grep -E '^(layers|inventory)'
    "$DSV4" logits -m "$W/$name" --ids "$ids" --decode 8 --all -o "$W/$name.logits.safetensors"
    stats "$W/$name.logits.safetensors"
}
check tiny --preset tiny
check tiny-fp8 --preset tiny --fp8-experts
check tiny-deep --preset tiny --layers 43
check default --preset default
check flash-2x8 --preset flash --layers 2 --experts 8
echo "all ok ($W)"
