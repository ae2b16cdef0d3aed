#!/usr/bin/env bash
# Run a command while a CPU-bound loop spins on every core (a busy box), and stop the loops after,
# whatever the command does. Its exit status is the command's.
set -uo pipefail
hogs=()
for _ in $(seq "$(nproc)"); do
  ( while :; do :; done ) &
  hogs+=($!)
done
trap 'kill "${hogs[@]}" 2>/dev/null; wait "${hogs[@]}" 2>/dev/null' EXIT
echo "loaded.sh: ${#hogs[@]} CPU-bound loops running beside: $*" >&2
"$@"
