# shellcheck shell=bash
# start_flask_chain PORT: the two-service Flask chain (benches/lib/flask_chain.py)
# with A on 127.0.0.1:PORT calling B on PORT+1; their pids are added to
# PIDS (lib/ab.sh kills them on exit), their output goes to $work. Needs
# $NAME and $work.
python3 -c "import flask, requests" 2>/dev/null || python3 -m pip install -q flask requests

wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "$NAME: nothing listens on $1" >&2
  exit 1
}

start_flask_chain() {
  local port=$1
  python3 benches/lib/flask_chain.py b $((port + 1)) >"$work/b.log" 2>&1 &
  PIDS+=($!)
  wait_port $((port + 1))
  python3 benches/lib/flask_chain.py a "$port" $((port + 1)) >"$work/a.log" 2>&1 &
  PIDS+=($!)
  wait_port "$port"
}
