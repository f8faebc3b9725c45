#!/bin/bash
# Installs what dsv4 needs to build and test on Debian (run as root).
set -euo pipefail
need=(build-essential clang make pkg-config libjansson-dev libmicrohttpd-dev libcurl4-openssl-dev
      libutf8proc-dev libpcre2-dev nodejs npm curl python3)
missing=()
for p in "${need[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi
