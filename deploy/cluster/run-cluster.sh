#!/usr/bin/env bash
# run-cluster.sh: three stompbox nodes sharing their destinations through
# a three-server NATS JetStream cluster, all on 127.0.0.1, for trying
# cluster mode on one machine (`make run-cluster` builds the binaries and
# runs this). Ctrl-C stops everything it started.
#
#   NATS     client 4222 4223 4224, routes 6222 6223 6224, monitoring 8222 8223 8224
#   stompbox STOMP 61613 61614 61615, HTTP (WebSocket /ws, demo chat /)
#            15674 15675 15676, admin (/metrics /readyz) 61680 61681 61682
#
# Fixed ports: a developer tool only, never used by tests. Data (JetStream
# stores, logs) lives in $RUN_DIR (default .run-cluster/), emptied at each
# start. Extra arguments go to every stompbox node, e.g.
#   deploy/cluster/run-cluster.sh -log-level debug
set -euo pipefail

# wait -n on given pids (below) needs bash 5.1.
if ((BASH_VERSINFO[0] < 5 || (BASH_VERSINFO[0] == 5 && BASH_VERSINFO[1] < 1))); then
	echo "run-cluster: needs bash 5.1 or later (this is $BASH_VERSION)" >&2
	exit 1
fi

STOMPBOX=${STOMPBOX:-./stompbox}
NATS_SERVER=${NATS_SERVER:-bin/nats-server}
RUN_DIR=${RUN_DIR:-.run-cluster}
HOST=127.0.0.1
NODES=(1 2 3)

[[ -n $RUN_DIR && $RUN_DIR != / ]] || { echo "run-cluster: RUN_DIR must name a directory to empty" >&2; exit 1; }
for bin in "$STOMPBOX" "$NATS_SERVER"; do
	[[ -x $bin ]] || { echo "run-cluster: $bin is not built (make run-cluster builds it)" >&2; exit 1; }
done

# Every child's pid, stompbox nodes first: they are stopped before the
# NATS servers so their shutdown can still reach JetStream.
stompbox_pids=()
nats_pids=()

# stop sends SIGTERM to the given pids and waits up to 20s for them
# (stompbox's shutdown_timeout is 10s), then SIGKILLs what is left.
stop() {
	local pid alive i
	(($# > 0)) || return 0
	kill -TERM "$@" 2>/dev/null || true
	for ((i = 0; i < 200; i++)); do
		alive=0
		for pid in "$@"; do
			kill -0 "$pid" 2>/dev/null && alive=1
		done
		((alive)) || break
		sleep 0.1
	done
	kill -KILL "$@" 2>/dev/null || true
	for pid in "$@"; do
		wait "$pid" 2>/dev/null || true
	done
}

cleanup() {
	trap - INT TERM EXIT
	((${#stompbox_pids[@]} + ${#nats_pids[@]} > 0)) || return 0
	echo
	echo "run-cluster: stopping the stompbox nodes, then NATS"
	stop "${stompbox_pids[@]}"
	stop "${nats_pids[@]}"
	echo "run-cluster: stopped (logs and JetStream data in $RUN_DIR/)"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# wait_http polls url until it answers 200, for at most 30s.
wait_http() {
	local url=$1 what=$2 i
	for ((i = 0; i < 300; i++)); do
		if curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	echo "run-cluster: $what did not come up within 30s ($url); see $RUN_DIR/" >&2
	exit 1
}

command -v curl >/dev/null || { echo "run-cluster: curl is needed to wait for the servers" >&2; exit 1; }

# Children run in sessions of their own, so Ctrl-C reaches this script
# alone and it stops them in order (Go programs would otherwise catch the
# terminal's SIGINT themselves, all at once).
detach=()
if command -v setsid >/dev/null; then
	detach=(setsid)
fi

# A port already taken (a NATS of your own on 4222, `make run` on 61613)
# would make a server fail, or worse answer the readiness checks for it.
for port in 4222 4223 4224 6222 6223 6224 8222 8223 8224 61613 61614 61615 15674 15675 15676 61680 61681 61682; do
	if (exec 3<>"/dev/tcp/$HOST/$port") 2>/dev/null; then
		echo "run-cluster: $HOST:$port is already in use; stop what listens there first" >&2
		exit 1
	fi
done

rm -rf "$RUN_DIR"
mkdir -p "$RUN_DIR"

routes=""
for n in "${NODES[@]}"; do
	routes+="${routes:+,}nats-route://$HOST:$((6221 + n))"
done
nats_urls=""
for n in "${NODES[@]}"; do
	nats_urls+="${nats_urls:+,}nats://$HOST:$((4221 + n))"
done

# Three NATS servers, one JetStream cluster ("stompbox-nats"); each routes
# to all three (a server ignores the route to itself).
for n in "${NODES[@]}"; do
	mkdir -p "$RUN_DIR/nats-$n"
	"${detach[@]}" "$NATS_SERVER" \
		--name "nats-$n" --cluster_name stompbox-nats \
		--addr "$HOST" --port $((4221 + n)) --http_port $((8221 + n)) \
		--cluster "nats://$HOST:$((6221 + n))" --routes "$routes" \
		--jetstream --store_dir "$RUN_DIR/nats-$n" \
		>"$RUN_DIR/nats-$n.log" 2>&1 &
	nats_pids+=($!)
done
# /healthz?js-enabled-only=true: JetStream is on; the meta leader is
# elected shortly after, and stompbox waits for it by itself.
for n in "${NODES[@]}"; do
	wait_http "http://$HOST:$((8221 + n))/healthz?js-enabled-only=true" "nats-$n"
done
echo "run-cluster: NATS JetStream cluster up: $nats_urls (monitoring http://$HOST:8222/jsz)"

# Three stompbox nodes on the same NATS cluster. Anonymous access and the
# chat rooms' history, as `make run`.
for n in "${NODES[@]}"; do
	"${detach[@]}" "$STOMPBOX" -auth-anonymous -topic-history '/topic/chat.#=1000/24h' \
		-cluster-nats "$nats_urls" -cluster-node "node-$n" \
		-listen "$HOST:$((61612 + n))" -http-listen "$HOST:$((15673 + n))" -admin-listen "$HOST:$((61679 + n))" \
		"$@" >"$RUN_DIR/stompbox-$n.log" 2>&1 &
	stompbox_pids+=($!)
done
for n in "${NODES[@]}"; do
	wait_http "http://$HOST:$((61679 + n))/readyz" "stompbox node-$n"
done

cat <<EOF

run-cluster: 3 stompbox nodes on a 3-server NATS JetStream cluster.
  Demo chat, one tab per node: a message sent on one shows on the others
    node-1  http://$HOST:15674/
    node-2  http://$HOST:15675/
    node-3  http://$HOST:15676/
  STOMP over TCP:   $HOST:61613  $HOST:61614  $HOST:61615
  Metrics:          http://$HOST:61680/metrics  (61681, 61682)
  NATS monitoring:  http://$HOST:8222/jsz  (8223, 8224)
  Logs:             $RUN_DIR/*.log
Ctrl-C stops everything.
EOF

# Stay until Ctrl-C, or until any child exits on its own (then stop the rest).
set +e
wait -n "${stompbox_pids[@]}" "${nats_pids[@]}"
rc=$?
echo "run-cluster: a process exited (status $rc); see $RUN_DIR/*.log" >&2
exit "$rc"
