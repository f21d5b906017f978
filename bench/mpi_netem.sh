#!/usr/bin/env bash
# mpi_netem.sh up RATE [DELAY] | run NP ARGS... | down — two "machines" on this one, for checking the
# data-parallel scaling model against a link whose bandwidth (and latency) are set by hand (root only).
#
# up: network namespaces nfA and nfB, each joined to a bridge in the root namespace by a veth pair
# (10.77.0.11 and 10.77.0.12; the bridge 10.77.0.1 also carries mpirun's control traffic). Both ends of
# each veth pair get a rate limit on their egress: `tc … netem rate RATE delay DELAY` where the kernel
# has netem, else a token bucket `tc … tbf rate RATE` (no added delay: DELAY is then refused). Traffic
# between the namespaces thus leaves one at RATE and crosses the bridge into the other at RATE.
# run: mpirun with one process in each namespace (Open MPI's ssh launcher replaced by `ip netns exec`),
# TCP between them, nothing shared: mpirun -np NP --host nfA,nfB … ARGS (ARGS: the nflow command line).
# down: remove it all.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
case ${1:-} in
up)
    rate=${2:?rate, e.g. 1gbit}; delay=${3:-}
    shape() { # shape [netns] DEV: the egress limit on DEV
        local ex=(); [ $# -eq 2 ] && ex=(ip netns exec "$1") && shift
        if [ -n "$delay" ]; then "${ex[@]}" tc qdisc add dev "$1" root netem rate "$rate" delay "$delay"
        else "${ex[@]}" tc qdisc add dev "$1" root tbf rate "$rate" burst 512kb latency 100ms; fi
    }
    ip link add nfbr0 type bridge && ip addr add 10.77.0.1/24 dev nfbr0 && ip link set nfbr0 up
    k=10
    for ns in nfA nfB; do
        k=$((k + 1))
        ip netns add $ns
        ip link add veth-$ns type veth peer name eth-$ns
        ip link set eth-$ns netns $ns
        ip link set veth-$ns master nfbr0 up
        ip netns exec $ns ip addr add 10.77.0.$k/24 dev eth-$ns
        ip netns exec $ns ip link set eth-$ns up
        ip netns exec $ns ip link set lo up
        shape $ns eth-$ns
        shape veth-$ns
    done
    ;;
run)
    np=${2:?processes}; shift 2
    agent=$(mktemp /tmp/nflow-netns-agent-XXXXXX)
    # Open MPI calls "AGENT HOST COMMAND…" (the command is a shell line for the remote side)
    printf '#!/bin/sh\nh=$1; shift\nexec ip netns exec "$h" /bin/sh -c "$*"\n' >"$agent"
    chmod +x "$agent"
    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
    mpirun --allow-run-as-root -np "$np" --host nfA,nfB --mca plm_rsh_agent "$agent" \
        --mca btl self,tcp --mca btl_tcp_if_include 10.77.0.0/24 --mca oob_tcp_if_include 10.77.0.0/24 "$@"
    rc=$?
    rm -f "$agent"
    exit $rc
    ;;
down)
    for ns in nfA nfB; do ip netns del $ns 2>/dev/null || true; ip link del veth-$ns 2>/dev/null || true; done
    ip link del nfbr0 2>/dev/null || true
    ;;
*) echo "usage: $0 up RATE [DELAY] | run NP ARGS... | down" >&2; exit 2 ;;
esac
