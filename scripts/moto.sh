#!/usr/bin/env bash
# Starts and stops a local moto server (the AWS emulator) on 127.0.0.1 and a free port.
#   scripts/moto.sh start [STATE_DIR]   prints the endpoint URL once it answers
#   scripts/moto.sh stop  [STATE_DIR]
# STATE_DIR (default .moto) holds the pid, the port and the server's log, so several
# emulators (one per developer or helper) can run side by side.
set -euo pipefail
cd "$(dirname "$0")/.."
cmd=${1:-}
dir=${2:-.moto}
venv=${VENV:-.venv}

case "$cmd" in
start)
  mkdir -p "$dir"
  if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
    echo "http://127.0.0.1:$(cat "$dir/port")"; exit 0
  fi
  port=$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
  # The request log (moto's recorder) lets tests assert which AWS calls were made, e.g. a
  # RebootInstances that changes nothing visible in the emulator. Recording starts when a
  # client asks for it (/moto-api/recorder/start-recording).
  : >"$dir/requests.jsonl"
  MOTO_RECORDER_FILEPATH="$PWD/$dir/requests.jsonl" nohup "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$dir/moto.log" 2>&1 &
  echo $! >"$dir/pid"
  echo "$port" >"$dir/port"
  for _ in $(seq 1 150); do
    if "$venv/bin/python" -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/', timeout=1)" 2>/dev/null; then
      echo "http://127.0.0.1:$port"; exit 0
    fi
    if ! kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
      echo "moto server exited; its log:" >&2; cat "$dir/moto.log" >&2; exit 1
    fi
    sleep 0.2
  done
  echo "moto server did not answer on port $port within 30 s" >&2
  kill "$(cat "$dir/pid")" 2>/dev/null || true
  exit 1
  ;;
stop)
  if [ -f "$dir/pid" ]; then
    pid=$(cat "$dir/pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/pid" "$dir/port"
  fi
  ;;
*)
  echo "usage: $0 start|stop [STATE_DIR]" >&2; exit 2 ;;
esac
