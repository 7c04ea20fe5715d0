#!/usr/bin/env bash
# Interoperability tests: starts a fresh stela (HTTP and the embedded MQTT broker, each on a free
# port) with an empty data directory and drives it with FROST's Python client
# (tests/interop/frost_client_test.py), then with Eclipse Paho's MQTT client
# (tests/interop/paho_mqtt_test.py).
#
#   tests/interop/run.sh
#
# Environment:
#   STELA_BIN         stela executable to test; when unset, `cargo build -p stela --locked`
#                     builds one (into CARGO_TARGET_DIR when that is set, as cargo does)
#   STELA_VENV        Python virtual environment for the clients, created when missing
#                     (default: $HOME/.cache/stela/venv)
#
# Runs both tests even when the first fails; exits non-zero when either fails (with the first
# failing test's status). The server is stopped with SIGTERM in any case.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${STELA_VENV:-$HOME/.cache/stela/venv}"

say() { printf 'interop: %s\n' "$*" >&2; }

# --- the binary -------------------------------------------------------------------------------
if [[ -n "${STELA_BIN:-}" ]]; then
  bin="$STELA_BIN"
else
  say "building stela"
  # Ask cargo where the executable is rather than guessing the target directory.
  bin="$(cd "$repo" && cargo build -p stela --bin stela --locked --message-format=json-render-diagnostics \
    | python3 -c '
import json, sys
for line in sys.stdin:
    message = json.loads(line)
    if message.get("reason") == "compiler-artifact" and message.get("executable") \
            and message["target"]["name"] == "stela":
        print(message["executable"])
')"
fi
if [[ ! -x "$bin" ]]; then
  say "no stela executable at '$bin'"
  exit 1
fi

# --- the client -------------------------------------------------------------------------------
if [[ ! -x "$venv/bin/python" ]]; then
  say "creating the Python environment $venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv"
fi
# Reinstall only when requirements.txt changed since the last install into this venv.
stamp="$venv/.stela-interop-requirements"
if ! cmp -s "$here/requirements.txt" "$stamp"; then
  say "installing $here/requirements.txt"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
  cp "$here/requirements.txt" "$stamp"
fi

# --- the server -------------------------------------------------------------------------------
work="$(mktemp -d)"
server_pid=""
stop_server() {
  # Sends SIGTERM and waits up to 40 s (the server allows open requests 30 s), then SIGKILL.
  # Sets server_status to the server's exit status.
  server_status=0
  [[ -n "$server_pid" ]] || return 0
  kill -TERM "$server_pid" 2>/dev/null || true
  for _ in $(seq 1 400); do
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$server_pid" 2>/dev/null; then
    say "stela did not stop within 40 s of SIGTERM; killing it"
    kill -KILL "$server_pid" 2>/dev/null || true
  fi
  wait "$server_pid" || server_status=$?
  server_pid=""
}
cleanup() {
  stop_server
  rm -rf "$work"
}
trap cleanup EXIT

# The server sees none of the caller's STELA_* settings: only the flags below.
unset_stela_vars=()
while IFS= read -r name; do
  unset_stela_vars+=(-u "$name")
done < <(compgen -e | grep '^STELA_' || true)

env "${unset_stela_vars[@]}" "$bin" serve --listen 127.0.0.1:0 --mqtt-listen 127.0.0.1:0 --data-dir "$work/data" \
  >"$work/stdout" 2>"$work/stderr" &
server_pid=$!

# The MQTT line comes first, then the HTTP one: once the HTTP line is there, so is the other.
base_url=""
mqtt_url=""
for _ in $(seq 1 600); do
  if line="$(grep -m1 '^stela listening on ' "$work/stdout")"; then
    base_url="${line#stela listening on }"
    if line="$(grep -m1 '^stela mqtt listening on ' "$work/stdout")"; then
      mqtt_url="${line#stela mqtt listening on }"
    fi
    break
  fi
  if ! kill -0 "$server_pid" 2>/dev/null; then
    break
  fi
  sleep 0.1
done
if [[ -z "$base_url" ]]; then
  say "stela did not announce its address within 60 s; its stderr:"
  cat "$work/stderr" >&2
  exit 1
fi
if [[ -z "$mqtt_url" ]]; then
  say "stela announced no MQTT address (no 'stela mqtt listening on' line); its stdout:"
  cat "$work/stdout" >&2
  exit 1
fi
say "stela is listening on $base_url and $mqtt_url"

# --- the tests --------------------------------------------------------------------------------
status=0
failed=()
"$venv/bin/python" "$here/frost_client_test.py" "$base_url/v1.1" || {
  status=$?
  failed+=(frost_client_test.py)
}
paho_status=0
"$venv/bin/python" "$here/paho_mqtt_test.py" "$base_url/v1.1" "$mqtt_url" || paho_status=$?
if [[ "$paho_status" -ne 0 ]]; then
  failed+=(paho_mqtt_test.py)
  [[ "$status" -ne 0 ]] || status=$paho_status
fi

stop_server
if [[ "$server_status" -ne 0 ]]; then
  say "warning: stela exited with status $server_status after SIGTERM (expected 0)"
fi
if [[ "$status" -ne 0 ]]; then
  say "failed: ${failed[*]}; the last lines stela logged:"
  tail -n 50 "$work/stderr" >&2
fi
exit "$status"
