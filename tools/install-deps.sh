#!/bin/bash
# Installs what dsv4 needs to build and test on Debian (run as root).
# Node.js/npm only drive the server tests with the official SDKs: they are
# taken from Debian only when no node/npm is on the PATH already (a
# NodeSource nodejs, which bundles npm, conflicts with Debian's npm).
set -euo pipefail
need=(build-essential clang make pkg-config libjansson-dev libmicrohttpd-dev libcurl4-openssl-dev
      libutf8proc-dev libpcre2-dev curl python3)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
missing=()
for p in "${need[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi
