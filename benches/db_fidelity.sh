#!/usr/bin/env bash
# Fidelity under full-speed database load: with `zt-trace run` attached,
# redis-benchmark (plain and pipelined -P 16), pgbench (simple, extended and
# prepared protocol) and mysqlslap each run flat out against the local
# servers (scripts/start-servers.sh), and every statement they send must be
# exactly one client span, with no event lost anywhere (kernel drop
# counters, undecodable records, parser desyncs, dropped spans). Prints a
# table (expected vs. spans per statement) and exits non-zero on any
# mismatch. Needs root, the servers, pgbench, redis-benchmark, mysqlslap.
#
#   benches/db_fidelity.sh                 # release build of this tree
#   N=200000 benches/db_fidelity.sh        # more redis requests per command
#   benches/db_fidelity.sh /tmp/zt-trace   # another binary
#   ZT_ARGS="--ring-buffer-mib 64" benches/db_fidelity.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-100000}          # redis requests per command
PG_CLIENTS=${PG_CLIENTS:-8}
PG_TX=${PG_TX:-3000}    # transactions per pgbench client
MY_CLIENTS=${MY_CLIENTS:-8}
MY_ITER=${MY_ITER:-300} # mysqlslap iterations
ZT_ARGS=${ZT_ARGS:-}
if [ $# -eq 0 ]; then
  cargo build --release -q -p cli
  set -- target/release/zt-trace
fi
BIN=$1
work=$(mktemp -d)
ZT_PID=
cleanup() {
  [ -n "$ZT_PID" ] && kill -INT "$ZT_PID" 2>/dev/null && wait "$ZT_PID" 2>/dev/null || true
  PGPASSWORD=zt-secret pgbench -i -I d -h 127.0.0.1 -U zt zt_test >/dev/null 2>&1 || true
  mysql -uroot -e "DROP DATABASE IF EXISTS zt_slap; DROP USER IF EXISTS 'ztslap'@'127.0.0.1'" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Setup (before tracing): pgbench tables, a mysqlslap user over TCP.
PGPASSWORD=zt-secret pgbench -i -q -s 1 -h 127.0.0.1 -U zt zt_test >/dev/null 2>&1
mysql -uroot -e "CREATE DATABASE IF NOT EXISTS zt_slap; CREATE USER IF NOT EXISTS 'ztslap'@'127.0.0.1' IDENTIFIED BY 'zt-secret';
  GRANT ALL PRIVILEGES ON zt_slap.* TO 'ztslap'@'127.0.0.1'; FLUSH PRIVILEGES;"

# One agent per run, so a backlog from one run never spills into the next;
# each run's spans and summary go to its own files.
: >"$work/runs.txt"
run() { # run NAME EXPECTED_PER_STATEMENT CMD...: records "name pid expected"
  local name=$1 expected=$2
  shift 2
  # shellcheck disable=SC2086
  "$BIN" run --output json --raw-sql $ZT_ARGS >"$work/$name.spans" 2>"$work/$name.err" &
  ZT_PID=$!
  for _ in $(seq 1 300); do grep -q "tracing (Ctrl-C" "$work/$name.err" && break; sleep 0.1; done
  local t0=$SECONDS
  "$@" >"$work/$name.out" 2>&1 &
  local pid=$!
  wait "$pid"
  local took=$((SECONDS - t0))
  sleep 2
  kill -INT "$ZT_PID"; wait "$ZT_PID" || true; ZT_PID=
  echo "$name $pid $expected" >>"$work/runs.txt"
  echo "# $name: ${took} s; $(tr '\r' '\n' <"$work/$name.out" | grep -E 'tps = .*without|requests per second|Average number of seconds' | tr -s ' \t' ' ' | tr '\n' ';')"
  grep -E "^zt-trace: (kernel drops|connections)" "$work/$name.err" | sed 's/^/#   /'
}
run redis "$N" redis-benchmark -h 127.0.0.1 -n "$N" -c 50 -t set,get,incr,lpush,lpop -q
run redis-P16 "$N" redis-benchmark -h 127.0.0.1 -n "$N" -c 50 -P 16 -t set,get,incr,lpush,lpop -q
for mode in simple extended prepared; do
  run "pgbench-$mode" $((PG_CLIENTS * PG_TX)) env PGPASSWORD=zt-secret \
    pgbench -n -M "$mode" -c "$PG_CLIENTS" -j 2 -t "$PG_TX" -h 127.0.0.1 -U zt zt_test
done
marker="zt$$x$RANDOM"
run mysqlslap $((MY_CLIENTS * MY_ITER)) mysqlslap -h 127.0.0.1 --protocol=tcp -u ztslap -pzt-secret \
  --create-schema=zt_slap --no-drop --concurrency="$MY_CLIENTS" --iterations="$MY_ITER" \
  --query="SELECT '$marker-a' FROM DUAL; SELECT '$marker-b', 1 + 1 FROM DUAL" --delimiter=";"

python3 - "$work" "$marker" "$PG_CLIENTS" <<'PY'
import collections, json, re, sys
work, marker, pg_clients = sys.argv[1], sys.argv[2], int(sys.argv[3])
runs = [l.split() for l in open(f"{work}/runs.txt")]
by_pid = collections.defaultdict(collections.Counter)
for name, _, _ in runs:
    for line in open(f"{work}/{name}.spans"):
        s = json.loads(line)
        if s.get("kind") != "CLIENT":
            continue
        pid = s["resource"].get("process.pid")
        text = s["attributes"].get("db.query.text", "")
        by_pid[pid][(s["name"], text)] += 1

def pg_statement(name, text):
    if name.startswith("PREPARE"):
        return "PREPARE"  # prepared mode: one Parse per statement per connection
    t = re.sub(r"\s+", " ", text.strip()).upper()
    for key in ("BEGIN", "END", "UPDATE PGBENCH_ACCOUNTS", "SELECT ABALANCE",
                "UPDATE PGBENCH_TELLERS", "UPDATE PGBENCH_BRANCHES", "INSERT INTO PGBENCH_HISTORY"):
        if t.startswith(key):
            return key
    return None

ok = True
print(f"{'run':<18} {'statement':<28} {'expected':>9} {'spans':>9}")
for name, pid, expected in runs:
    pid, expected = int(pid), int(expected)
    got = by_pid.get(pid, collections.Counter())
    rows = collections.Counter()
    if name.startswith("redis"):
        for (n, _), c in got.items():
            if n in ("SET", "GET", "INCR", "LPUSH", "LPOP"):
                rows[n] += c
        want = ["SET", "GET", "INCR", "LPUSH", "LPOP"]
    elif name.startswith("pgbench"):
        for (n, t), c in got.items():
            k = pg_statement(n, t)
            if k:
                rows[k] += c
        want = ["BEGIN", "UPDATE PGBENCH_ACCOUNTS", "SELECT ABALANCE", "UPDATE PGBENCH_TELLERS",
                "UPDATE PGBENCH_BRANCHES", "INSERT INTO PGBENCH_HISTORY", "END"]
        prepares = pg_clients * len(want) if name.endswith("prepared") else 0
        mark = "" if rows["PREPARE"] == prepares else "   <-- MISMATCH"
        ok &= rows["PREPARE"] == prepares
        print(f"{name:<18} {'PREPARE (Parse)':<28} {prepares:>9} {rows['PREPARE']:>9}{mark}")
    else:
        for (n, t), c in got.items():
            for tag in ("a", "b"):
                if f"{marker}-{tag}" in t:
                    rows[f"SELECT '{marker}-{tag}'"] += c
        want = [f"SELECT '{marker}-a'", f"SELECT '{marker}-b'"]
    for w in want:
        mark = "" if rows[w] == expected else "   <-- MISMATCH"
        ok &= rows[w] == expected
        print(f"{name:<18} {w[:28]:<28} {expected:>9} {rows[w]:>9}{mark}")
    other = sum(got.values()) - sum(rows.values())
    print(f"{name:<18} {'(other statements)':<28} {'':>9} {other:>9}")

def num(err, pattern):
    m = re.search(pattern, err)
    return int(m.group(1)) if m else None
patterns = {
    "kernel events lost": r"kernel drops: (\d+) events lost",
    "undecodable records": r"(\d+) undecodable",
    "parser desyncs": r"parser desyncs (\d+)",
    "unmatched responses": r"unmatched responses (\d+)",
    "spans dropped": r"spans dropped \(table full\) (\d+)",
}
for name, _, _ in runs:
    err = open(f"{work}/{name}.err").read()
    vals = {k: num(err, p) for k, p in patterns.items()}
    print(f"# {name}: " + ", ".join(f"{k} {v}" for k, v in vals.items()))
    ok &= all(v == 0 for v in vals.values())
print("# RESULT:", "OK" if ok else "FAILED")
sys.exit(0 if ok else 1)
PY
