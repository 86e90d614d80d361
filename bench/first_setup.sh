#!/usr/bin/env bash
# Times a newcomer's first setup in one go: `make run` on a fresh clone until the server
# answers /healthz, then `make test`. Every output line is stamped with the seconds since
# the start, so the phases (tool installs, the browser bundle, the server build, the test
# build, the tests) can be read off the log.
#
#   bench/first_setup.sh CLONE LOG
#
# CLONE is a fresh `git clone` of the project; for a first-time figure, run it on a machine
# (or with a CARGO_TARGET_DIR and CARGO_HOME) where nothing is built or installed yet.
# The summary lines start with "LISTENING" and "MAKE TEST". With RUN_ONLY=1 it stops once
# the server listens.
set -uo pipefail
clone=$(cd "$1" && pwd)
log=$2
cd "$clone"
t0=$(date +%s)
stamp() { while IFS= read -r line; do printf '%6d %s\n' "$(( $(date +%s) - t0 ))" "$line"; done; }
echo "start $(date -u +%FT%TZ) in $clone" > "$log"
( make run 2>&1 | stamp >> "$log" ) &
run=$!
until curl -s -o /dev/null http://127.0.0.1:3000/healthz; do
  sleep 2
  if ! kill -0 "$run" 2>/dev/null; then
    echo "make run ended before the server listened" | tee -a "$log"
    exit 1
  fi
done
echo "LISTENING after $(( $(date +%s) - t0 )) s" | tee -a "$log"
pkill -f "release/jigsaw-lab serve" || true
wait "$run" 2>/dev/null
[ "${RUN_ONLY:-0}" = 1 ] && exit 0
t1=$(date +%s)
make test 2>&1 | stamp >> "$log"
rc=${PIPESTATUS[0]}
echo "MAKE TEST rc=$rc in $(( $(date +%s) - t1 )) s; $(( $(date +%s) - t0 )) s since the start" | tee -a "$log"
exit "$rc"
