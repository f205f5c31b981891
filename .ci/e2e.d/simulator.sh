#!/usr/bin/env bash
# Simulator, replay and GTFS-RT ingest end to end against the real broker.
set -euo pipefail
cargo test --locked -p busflow-simulator --test cairns_hour --test replay --test ingest
