#!/usr/bin/env bash
# Three Cairn nodes on this machine (loopback only): A owns namespace "demo", B and C follow it over iroh.
# Then A is killed, and recalls are answered by B and verified against A's key, with witness cosignatures from
# the replicas that checked A's roots.
#
# Usage: sdk-examples/replication-demo.sh
#   CAIRN=/path/to/cairn   binary to use (default: release build under the shared target dir, else debug)
#   KEEP=1                 keep the nodes' data dirs (printed at the end)
set -euo pipefail

target="${CARGO_TARGET_DIR:-${CAIRN_CACHE:-$HOME/.cache/cairn}/target}"
if [[ -z "${CAIRN:-}" ]]; then
  for c in "$target/release/cairn" "$target/debug/cairn"; do
    if [[ -x "$c" ]]; then CAIRN="$c"; break; fi
  done
fi
if [[ -z "${CAIRN:-}" || ! -x "$CAIRN" ]]; then
  echo "no cairn binary found: build it (cargo build --release --bin cairn) or set CAIRN" >&2
  exit 2
fi

work="$(mktemp -d -t cairn-demo-XXXXXX)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ -z "${KEEP:-}" ]]; then rm -rf "$work"; else echo "data dirs kept in $work"; fi
}
trap cleanup EXIT

export CAIRN_LOG="${CAIRN_LOG:-warn}"
export CAIRN_STATE="$work/client-state.json"

# start NAME: runs `cairn serve` in the background and waits (bounded) for its gRPC address.
start() {
  local name="$1"
  mkdir -p "$work/$name"
  "$CAIRN" serve --data-dir "$work/$name" --listen 127.0.0.1:0 --p2p-listen 127.0.0.1:0 \
    >"$work/$name.out" 2>"$work/$name.err" &
  pids+=("$!")
  eval "pid_$name=$!"
  for _ in $(seq 1 600); do
    if grep -q "cairn node listening on" "$work/$name.out" 2>/dev/null; then
      local addr
      addr="$(sed -n 's/^cairn node listening on \([^ ]*\).*/\1/p' "$work/$name.out" | head -n1)"
      eval "url_$name=http://$addr"
      return 0
    fi
    sleep 0.1
  done
  echo "node $name did not start; its log:" >&2
  cat "$work/$name.err" >&2
  exit 1
}

# seq_of URL: the latest root seq of "demo" on that node (0 if none).
seq_of() {
  "$CAIRN" --node "$1" --json namespaces |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(next((n["seq"] for n in d["namespaces"] if n["namespace"]=="demo"), 0))'
}

echo "== starting nodes A, B, C"
start a; start b; start c
ta="$("$CAIRN" --node "$url_a" ticket)"; tb="$("$CAIRN" --node "$url_b" ticket)"; tc="$("$CAIRN" --node "$url_c" ticket)"
for pair in "$url_a $tb" "$url_a $tc" "$url_b $ta" "$url_b $tc" "$url_c $ta" "$url_c $tb"; do
  set -- $pair
  "$CAIRN" --node "$1" peer add "$2" >/dev/null
done
a_id="$("$CAIRN" --node "$url_a" id)"
echo "A = $a_id"
echo "B = $("$CAIRN" --node "$url_b" id)"
echo "C = $("$CAIRN" --node "$url_c" id)"

echo "== A remembers"
while IFS= read -r line; do
  "$CAIRN" --node "$url_a" remember --ns demo "$line" >/dev/null
done <<'EOF'
Alice prefers green tea to coffee.
Bob walks his dog Biscuit every morning at 7.
The server migration is scheduled for Friday night.
Carol's birthday is on the 14th of June.
Dave is allergic to peanuts and shellfish.
Eve moved to Lisbon last spring.
EOF
target_seq="$(seq_of "$url_a")"
echo "A's root for demo is at seq $target_seq"

echo "== B and C follow demo from A"
"$CAIRN" --node "$url_b" follow --ns demo --from "$a_id"
"$CAIRN" --node "$url_c" follow --ns demo --from "$a_id"
for n in b c; do
  eval "url=\$url_$n"
  for _ in $(seq 1 600); do
    [[ "$(seq_of "$url")" -ge "$target_seq" ]] && break
    sleep 0.1
  done
  echo "$n has seq $(seq_of "$url")"
done

echo "== waiting for witness cosignatures to spread"
for _ in $(seq 1 60); do
  if "$CAIRN" --node "$url_b" recall --ns demo --trust "$a_id" --witnesses 1 tea >/dev/null 2>&1; then break; fi
  sleep 0.5
done

echo "== killing A"
kill -9 "$pid_a"
sleep 0.5

echo "== recall from B, verified against A's key with at least one witness"
"$CAIRN" --node "$url_b" recall --ns demo -k 3 --verify --trust "$a_id" --witnesses 1 "what can't Dave eat?"
echo "== recall from C"
"$CAIRN" --node "$url_c" recall --ns demo -k 2 --verify --trust "$a_id" --witnesses 1 "when is the migration?"
echo "== B refuses writes (one writer per namespace)"
if "$CAIRN" --node "$url_b" remember --ns demo "written on a replica" 2>&1; then
  echo "B accepted a write" >&2
  exit 1
fi
echo "demo ok"
