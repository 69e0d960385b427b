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

# on NAME ARGS...: runs a client command against node NAME with the admin token it wrote into its data dir.
on() {
  local name="$1"; shift
  local url
  eval "url=\$url_$name"
  CAIRN_TOKEN="$(cat "$work/$name/admin.token")" "$CAIRN" --node "$url" "$@"
}

# seq_of NAME: the latest root seq of "demo" on that node (0 if none).
seq_of() {
  on "$1" --json namespaces |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(next((n["seq"] for n in d["namespaces"] if n["namespace"]=="demo"), 0))'
}

echo "== starting nodes A, B, C"
start a; start b; start c
ta="$(on a ticket)"; tb="$(on b ticket)"; tc="$(on c ticket)"
for pair in "a $tb" "a $tc" "b $ta" "b $tc" "c $ta" "c $tb"; do
  set -- $pair
  on "$1" peer add "$2" >/dev/null
done
# Replication is private: A lets B and C fetch "demo" (and they re-serve it only to peers A's grant names).
for t in "$tb" "$tc"; do on a share --ns demo --with "${t%%@*}" >/dev/null; done
a_id="$(on a id)"
echo "A = $a_id"
b_id="$(on b id)"; c_id="$(on c id)"
echo "B = $b_id"
echo "C = $c_id"
# The witness set: the keys whose cosignatures count toward --witnesses (here the two replicas).
wit=(--witness "$b_id" --witness "$c_id")

echo "== A remembers"
while IFS= read -r line; do
  on a remember --ns demo "$line" >/dev/null
done <<'EOF'
Alice prefers green tea to coffee.
Bob walks his dog Biscuit every morning at 7.
The server migration is scheduled for Friday night.
Carol's birthday is on the 14th of June.
Dave is allergic to peanuts and shellfish.
Eve moved to Lisbon last spring.
EOF
target_seq="$(seq_of a)"
echo "A's root for demo is at seq $target_seq"

echo "== B and C follow demo from A"
on b follow --ns demo --from "$a_id"
on c follow --ns demo --from "$a_id"
for n in b c; do
  for _ in $(seq 1 600); do
    [[ "$(seq_of "$n")" -ge "$target_seq" ]] && break
    sleep 0.1
  done
  echo "$n has seq $(seq_of "$n")"
done

echo "== waiting for witness cosignatures to spread"
for _ in $(seq 1 60); do
  if on b recall --ns demo --trust "$a_id" --witnesses 1 "${wit[@]}" tea >/dev/null 2>&1; then break; fi
  sleep 0.5
done

echo "== killing A"
kill -9 "$pid_a"
sleep 0.5

echo "== recall from B, verified against A's key with at least one witness"
on b recall --ns demo -k 3 --verify --trust "$a_id" --witnesses 1 "${wit[@]}" "what can't Dave eat?"
echo "== recall from C"
on c recall --ns demo -k 2 --verify --trust "$a_id" --witnesses 1 "${wit[@]}" "when is the migration?"
echo "== B refuses writes (one writer per namespace)"
if on b remember --ns demo "written on a replica" 2>&1; then
  echo "B accepted a write" >&2
  exit 1
fi
echo "demo ok"
