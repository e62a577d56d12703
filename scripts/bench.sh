#!/usr/bin/env bash
# Reproduces the README's Performance section in one command (about 4
# minutes): runs every benchmark of the package through a veth pair in a
# private network namespace, then prints the benchstat tables and the ratios
# the README quotes, with their targets.
#
#   scripts/bench.sh [raw-output-file]
#
# Each sub-benchmark pairs its variant with the group's baseline inside every
# iteration and reports the median ratio (time/plain, rate/unbound), so the
# load of this shared machine hits both sides alike; rounds, each a fresh
# test binary process, give benchstat its samples. BENCH_ROUNDS (default 10)
# and BENCH_TIME (default 500ms per sub-benchmark) tune the run. The
# namespaces vanish with each process; temporary files are removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${BENCH_ROUNDS:-10}
benchtime=${BENCH_TIME:-500ms}
benchstat_pkg=golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
raw=${1:-$work/bench.txt}
: >"$raw"

export BINDTODEV_LAB=require # fail, never skip, when no lab can be made

benchstat() { GOFLAGS= go run "$benchstat_pkg" "$@"; }
# Fetch and build benchstat before measuring, not in the middle of it.
benchstat -h >/dev/null 2>&1 || true
go test -c -o "$work/bindtodev.test" .

{
	echo "# $(go version), Linux $(uname -r), $(nproc) CPUs"
	echo "# load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee -a "$raw"
for round in $(seq "$rounds"); do
	echo "round $round/$rounds" >&2
	"$work/bindtodev.test" -test.run '^$' -test.bench . -test.benchmem \
		-test.benchtime "$benchtime" -test.count 1 >>"$raw"
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$raw"

echo
[ "$raw" -ef "$work/bench.txt" ] || cp "$raw" "$work/bench.txt"
(cd "$work" && benchstat bench.txt)

echo
echo "Medians over the rounds: time/plain and rate/unbound are paired ratios"
echo "(variant against baseline inside each iteration); allocs are per operation."
awk '
function median(key,   n, i, j, v, t) {
	n = cnt[key]
	if (n == 0) { missing = 1; return 0 }
	for (i = 1; i <= n; i++) v[i] = val[key, i]
	for (i = 2; i <= n; i++) for (j = i; j > 1 && v[j-1] > v[j]; j--) { t = v[j]; v[j] = v[j-1]; v[j-1] = t }
	return n % 2 ? v[(n+1)/2] : (v[n/2] + v[n/2+1]) / 2
}
function m(bench, unit) { return median(bench SUBSEP unit) }
function show(label, got) { printf "  %-56s %8.3f\n", label, got }
function check(label, got, op, target,   ok) {
	ok = (op == "<=") ? got <= target : got >= target
	if (!ok) missed++
	printf "  %-56s %8.3f  target %s %s  %s\n", label, got, op, target, ok ? "ok" : "MISSED"
}
/^Benchmark/ {
	name = $1; sub(/-[0-9]+$/, "", name); sub(/^Benchmark/, "", name)
	for (i = 3; i < NF; i++) {
		key = name SUBSEP $(i+1)
		val[key, ++cnt[key]] = $i
	}
}
END {
	d = "Dial/variant="
	show("dial plain / plain (noise floor)", m(d "plain", "time/plain"))
	check("dial bound / plain", m(d "bound", "time/plain"), "<=", 1.05)
	check("dial control / plain", m(d "control", "time/plain"), "<=", 1.05)
	show("dial empty Control / plain", m(d "empty-control", "time/plain"))
	show("dial floor (empty Control + setsockopt) / plain", m(d "floor", "time/plain"))
	show("kernel: socket+setsockopt(\"\")+connect / plain", m("KernelConnect/variant=setsockopt-no-device", "time/plain"))
	show("kernel: socket+setsockopt(veth)+connect / plain", m("KernelConnect/variant=bound", "time/plain"))
	show("dial bound-source / plain (one bind(2) more)", m(d "bound-source", "time/plain"))
	show("dial naive / plain", m(d "naive", "time/plain"))
	f = "DialFloor/variant="
	check("dial bound / floor (paired with the floor)", m(f "bound", "time/floor"), "<=", 1.02)
	show("dial NetDialer / floor (one getsockopt more)", m(f "netdialer", "time/floor"))
	show("dial control / floor (one getsockopt more)", m(f "control", "time/floor"))
	check("dial allocs: bound - empty Control", m(d "bound", "allocs/op") - m(d "empty-control", "allocs/op"), "<=", 2)
	check("dial allocs: control - empty Control", m(d "control", "allocs/op") - m(d "empty-control", "allocs/op"), "<=", 2)
	split("1 200 1000", sizes, " ")
	for (k = 1; k <= 3; k++) {
		mi = "DialManyInterfaces/ifaces=" sizes[k] "/variant="
		r[k] = m(mi "bound", "time/plain")
		check(sprintf("%4d interfaces: dial bound / plain", sizes[k]), r[k], "<=", 1.05)
		check(sprintf("%4d interfaces: allocs bound - empty Control", sizes[k]), m(mi "bound", "allocs/op") - m(mi "empty-control", "allocs/op"), "<=", 2)
		show(sprintf("%4d interfaces: dial naive / plain", sizes[k]), m(mi "naive", "time/plain"))
	}
	check("bound / plain at 1000 interfaces over the same at 1", r[3] / r[1], "<=", 1.05)
	for (k = 1; k <= 2; k++) for (c = 1; c <= 2; c++) {
		size = (k == 1) ? 64 : 1400; mode = (c == 1) ? "connected" : "unconnected"
		u = "UDPWrite/size=" size "/mode=" mode "/variant="
		check(sprintf("UDP %4d B %-11s rate bound / unbound", size, mode), m(u "bound", "rate/unbound"), ">=", 0.97)
	}
	check("accept rate bound / unbound", m("ListenAccept/variant=bound", "rate/unbound"), ">=", 0.97)
	show("follow: dial bound / bound (noise floor)", m("FollowDial/variant=bound", "time/bound"))
	check("follow: dial with Follow / bound", m("FollowDial/variant=follow", "time/bound"), "<=", 1.03)
	check("follow: interface up -> listening again (ms)", m("FollowRelisten", "ms/relisten"), "<=", 5)
	check("follow: interface deleted -> blocked Read returns (ms)", m("FollowDeleteRead", "ms/read-return"), "<=", 5)
	if (missing) { print "  some benchmark results are missing"; exit 1 }
	printf "  %d target(s) missed\n", missed
}' "$raw"
