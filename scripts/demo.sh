#!/usr/bin/env bash
# `make demo`: the example flows linted and drawn, an embedded redis-server, simulated users
# talking to the real runtime on the wall clock, a worker (timeouts, recovery, alerts) and
# the live dashboard. Ctrl-C stops everything; the data stays in ./.flowkit.
#
#   DEMO_USERS=3000 DEMO_SPEED=4 PORT=8501 make demo
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
USERS=${DEMO_USERS:-3000}
SPEED=${DEMO_SPEED:-4}
PORT=${PORT:-8501}

$BIN/flowkit lint examples/flows
mkdir -p out
for f in examples/flows/*.yaml; do
  $BIN/flowkit render "$f" -o "out/$(basename "$f" .yaml).svg"
done
echo "rendered the example flows into out/*.svg"

# One embedded server for every process below (found through ./.flowkit/redis/server.json).
$BIN/flowkit redis start
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  $BIN/flowkit redis stop >/dev/null 2>&1 || true
}
trap cleanup EXIT INT TERM

$BIN/flowkit simulate examples/flows --users "$USERS" --realtime --speed "$SPEED" --concurrency 4 \
  --invalid-rate 0.12 --abandon-rate 0.04 --duplicate-rate 0.05 --services examples.services:services \
  --log out/demo-sent.jsonl > out/demo-simulate.log 2>&1 &
pids+=($!)
# The worker sends timeout messages and recovered replies through WhatsApp; simulated users
# have no phone, so it sends to the local Graph API imitation (its settings in out/demo-graph.env).
rm -f out/demo-graph.env
$BIN/python -c '
import time
from flowkit.testing.fake_graph import FakeGraphAPI
graph = FakeGraphAPI().start()
print(" ".join(f"{k}={v}" for k, v in graph.env().items()), flush=True)
while True:
    time.sleep(3600)
' > out/demo-graph.env &
pids+=($!)
while [ ! -s out/demo-graph.env ]; do sleep 0.1; done
env $(cat out/demo-graph.env) $BIN/flowkit worker examples/flows --services examples.services:services \
  --alerts examples/alerts.yaml > out/demo-worker.log 2>&1 &
pids+=($!)

echo "simulating $USERS users in real time (x$SPEED); logs in out/demo-*.log"
echo "dashboard: http://127.0.0.1:$PORT  (Ctrl-C stops the demo)"
# The simulator records the runtime's Redis metrics, so the rates and charts move as users talk.
# In the background and waited for: bash runs the trap (which stops everything, the dashboard
# stopping its Streamlit) as soon as a signal arrives, not when a foreground child exits.
$BIN/flowkit dashboard examples/flows --port "$PORT" &
pids+=($!)
wait "$!"
