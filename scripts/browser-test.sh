#!/usr/bin/env bash
# Browser tests of the live map: installs Debian's chromium (apt) and the pinned npm packages
# when missing, builds busflow, runs tests/browser/map.test.mjs. Screenshots land in
# tests/browser/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ ! -x /usr/bin/chromium ]]; then
  echo "browser-test: installing Debian's chromium" >&2
  sudo_cmd=""; [[ $(id -u) -eq 0 ]] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq chromium >/dev/null
fi
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)

target="${CARGO_TARGET_DIR:-target}"
cargo build --locked --bin busflow
BUSFLOW_BIN="$target/debug/busflow" node tests/browser/map.test.mjs
