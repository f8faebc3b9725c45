#!/bin/sh
# mock_endpoint.sh - run the scripted OpenAI-compatible test endpoint of
# `dsv4 eval` (src/eval/eval_mock.c) on 127.0.0.1.
#   tools/mock_endpoint.sh [SCRIPT.json] [PORT]
# SCRIPT defaults to tools/mock_default_good.json (answers the default
# suite); PORT 0 picks a free port, printed on the first line.
DSV4=${DSV4:-./dsv4}
exec "$DSV4" eval --mock-serve "${1:-tools/mock_default_good.json}" --port "${2:-0}"
