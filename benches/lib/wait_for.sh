# shellcheck shell=bash
# wait_for FILE PATTERN [PID]: wait until FILE has a line matching PATTERN
# (up to 120 s, or until process PID, the one writing it, is gone); exits
# the script with FILE's text otherwise. For open_requests.sh and
# open_heap.sh.
wait_for() {
	for _ in $(seq 1200); do
		grep -q "$2" "$1" 2>/dev/null && return 0
		if [ -n "${3:-}" ] && ! kill -0 "$3" 2>/dev/null; then
			grep -q "$2" "$1" 2>/dev/null && return 0
			echo "gave up waiting for '$2': the process writing $1 exited:" >&2
			cat "$1" >&2
			exit 1
		fi
		sleep 0.1
	done
	echo "timed out waiting for '$2' in $1:" >&2
	cat "$1" >&2
	exit 1
}
