#!/usr/bin/env bash
# `scepd run` at rest: start-to-READY, RSS and idle CPU with 10 and with 1,000 identities whose
# certificates were issued beforehand by a local devca (so no job is due: the daemon loads,
# schedules and sleeps).  A report, not a test: exits 0 unless the harness itself cannot run.
#
#   start-to-READY  from exec to the READY=1 datagram on $NOTIFY_SOCKET (a socket this script
#                   listens on).  A scepd that sends no READY=1 is timed to its
#                   'scepd running:' log line plus the end of the first job instead, and the
#                   report says so.
#   RSS             VmRSS from /proc/PID/status at READY and after the idle minute; the larger
#                   one is judged.
#   idle CPU        utime+stime from /proc/PID/stat over IDLE_SECONDS (60) once every initial
#                   job has run, with WATCHDOG_USEC=60s as the unit sets it (pings included).
#                   The kernel counts in clock ticks (1/100 s here): 0.01 s is one tick.
#
#   SCEPD (default .venv/bin/scepd; e.g. "python3 -m scepd"), IDLE_SECONDS, ENROLL_JOBS
set -euo pipefail

cd "$(dirname "$0")/.."            # repo root, so the default SCEPD resolves
SCEPD=${SCEPD:-.venv/bin/scepd}
read -ra SCEPD_CMD <<<"$SCEPD"
IDLE_SECONDS=${IDLE_SECONDS:-60}
ENROLL_JOBS=${ENROLL_JOBS:-$(( $(nproc) * 2 ))}
BIG=${BENCH_BIG:-1000}
SMALL=10

command -v "${SCEPD_CMD[0]}" >/dev/null || { echo "no scepd at $SCEPD (create .venv or set SCEPD)" >&2; exit 2; }
command -v python3 >/dev/null || { echo "missing python3" >&2; exit 2; }

WORK=$(mktemp -d)
CA_PID=
cleanup() {
    if [[ -n $CA_PID ]]; then kill "$CA_PID" 2>/dev/null || true; wait "$CA_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# A CA whose certificates are far from due (30 days, renew at 66%), a static challenge.
echo bench-challenge >"$WORK/challenge"
"${SCEPD_CMD[@]}" devca init --dir "$WORK/ca" --validity 30d --challenge-file "$WORK/challenge" >/dev/null
"${SCEPD_CMD[@]}" devca serve --dir "$WORK/ca" --port 0 >"$WORK/ca.log" 2>&1 &
CA_PID=$!
URL=
for _ in $(seq 100); do
    URL=$(sed -n 's/^scep url: //p' "$WORK/ca.log")
    [[ -n $URL ]] && break
    kill -0 "$CA_PID" 2>/dev/null || break
    sleep 0.1
done
[[ -n $URL ]] || { echo "devca did not start:" >&2; cat "$WORK/ca.log" >&2; exit 2; }

# config.yaml WORK URL FIRST COUNT: identities idNNNN from FIRST on, sharing one state_dir and
# one certificate directory, so that every config names the same files.
write_config() {
    python3 - "$@" <<'EOF'
import sys
out, work, url, first, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
lines = [f"state_dir: {work}/state", "servers:", f"  ca: {{url: {url}}}", "identities:"]
for i in range(first, first + count):
    n = f"id{i:04d}"
    lines += [f"  {n}:", "    server: ca", f"    subject: CN={n}.bench.example",
              f"    san: {{dns: [{n}.bench.example]}}", f"    key: {work}/certs/{n}.key",
              f"    cert: {work}/certs/{n}.pem", f"    challenge: {{file: {work}/challenge}}"]
open(out, "w").write("\n".join(lines) + "\n")
EOF
}
mkdir -p "$WORK/certs"
write_config "$WORK/big.yaml" "$WORK" "$URL" 0 "$BIG"
write_config "$WORK/small.yaml" "$WORK" "$URL" 0 "$SMALL"

# Issue all 1,000 certificates first: `renew --all` enrolls identities that have none, in
# ENROLL_JOBS parallel processes over disjoint slices (key generation is the slow part).
echo "issuing $BIG certificates with $ENROLL_JOBS parallel 'scepd renew --all' ..."
START=$(date +%s.%N)
pids=()
per=$(( (BIG + ENROLL_JOBS - 1) / ENROLL_JOBS ))
for ((j = 0; j < ENROLL_JOBS; j++)); do
    first=$((j * per)); count=$(( BIG - first < per ? BIG - first : per ))
    ((count > 0)) || break
    write_config "$WORK/slice$j.yaml" "$WORK" "$URL" "$first" "$count"
    "${SCEPD_CMD[@]}" --config "$WORK/slice$j.yaml" renew --all >"$WORK/slice$j.log" 2>&1 &
    pids+=($!)
done
failed=0
for p in "${pids[@]}"; do wait "$p" || failed=$((failed + 1)); done
ENROLL_S=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$START" "$(date +%s.%N)")
ISSUED=$(find "$WORK/certs" -name '*.pem' | wc -l)
echo "issued $ISSUED/$BIG certificates in ${ENROLL_S}s ($failed slice(s) with errors)"
if ((ISSUED != BIG)); then
    tail -n 5 "$WORK"/slice*.log >&2; echo "cannot measure without every certificate" >&2; exit 2
fi

# measure.py CONFIG N IDLE SCEPD...: one `scepd run`; prints one JSON object.
cat >"$WORK/measure.py" <<'EOF'
import json, os, re, signal, socket, subprocess, sys, threading, time

config, n, idle, cmd = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4:]
tick = os.sysconf("SC_CLK_TCK")
name = f"scepd-bench-{os.getpid()}-{n}"
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind("\0" + name)  # abstract: nothing to clean up, no path length limit
env = dict(os.environ, NOTIFY_SOCKET="@" + name, WATCHDOG_USEC="60000000")
# WATCHDOG_PID must be the daemon's pid: sh sets it to its own, then execs scepd in place.
argv = ["/bin/sh", "-c", 'WATCHDOG_PID=$$; export WATCHDOG_PID; exec "$@"', "sh",
        *cmd, "--config", config, "run"]
ev = {"ready": None, "running": None, "first_job": None, "jobs": 0, "all_jobs": None,
      "watchdog": 0, "status": None, "rss_ready_kib": None}
lock = threading.Lock()
job_line = re.compile(r": (not-due|enrolled|renewed|pending|failed|waiting|would-\w+): ")

def vm(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None

def cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / tick  # utime, stime

t0 = time.monotonic()
proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE, text=True)

def notifications():
    sock.settimeout(0.5)
    while proc.poll() is None:
        try:
            data = sock.recv(4096).decode(errors="replace")
        except TimeoutError:
            continue
        now = time.monotonic() - t0
        fields = dict(l.split("=", 1) for l in data.splitlines() if "=" in l)
        with lock:
            if fields.get("READY") == "1" and ev["ready"] is None:
                ev["ready"] = now
                try:
                    ev["rss_ready_kib"] = vm(proc.pid, "VmRSS")
                except OSError:
                    pass
            if fields.get("WATCHDOG") == "1":
                ev["watchdog"] += 1
            if "STATUS" in fields:
                ev["status"] = fields["STATUS"]

def log_lines():
    tail = []
    for line in proc.stderr:
        now = time.monotonic() - t0
        tail = (tail + [line.rstrip()])[-5:]
        with lock:
            if ev["running"] is None and "scepd running:" in line:
                ev["running"] = now
            if job_line.search(line):
                ev["jobs"] += 1
                if ev["first_job"] is None:
                    ev["first_job"] = now
                if ev["jobs"] >= n and ev["all_jobs"] is None:
                    ev["all_jobs"] = now
    ev["tail"] = tail

threading.Thread(target=notifications, daemon=True).start()
threading.Thread(target=log_lines, daemon=True).start()

def wait_for(cond, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        with lock:
            if cond():
                return True
        time.sleep(0.01)
    return False

result = {"n": n}
try:
    # Every initial job has run (or READY came and the jobs are done) or 120 s: then decide.
    wait_for(lambda: ev["all_jobs"] is not None, 120)
    wait_for(lambda: ev["ready"] is not None, 2)  # a READY=1 sent after the jobs, if any
    if proc.poll() is not None:
        raise SystemExit(f"scepd run exited {proc.returncode}")
    with lock:
        if ev["ready"] is not None:
            result["ready_s"], result["ready_kind"] = ev["ready"], "READY=1"
        elif ev["running"] is not None and ev["first_job"] is not None:
            result["ready_s"] = max(ev["running"], ev["first_job"])
            result["ready_kind"] = "no READY=1: 'scepd running:' + first job"
            result["rss_ready_kib"] = vm(proc.pid, "VmRSS")  # later than READY would be
        else:
            raise SystemExit("neither READY=1 nor 'scepd running:' + a job line seen")
        result["rss_ready_kib"] = result.get("rss_ready_kib") or ev["rss_ready_kib"]
        result["all_jobs_s"] = ev["all_jobs"]
    time.sleep(1)
    c0, w0 = cpu(proc.pid), time.monotonic()
    time.sleep(idle)
    c1, w1 = cpu(proc.pid), time.monotonic()
    result["idle_cpu_s"] = c1 - c0
    result["idle_wall_s"] = w1 - w0
    result["rss_idle_kib"] = vm(proc.pid, "VmRSS")
    result["hwm_kib"] = vm(proc.pid, "VmHWM")
    with lock:
        result["watchdog_pings"], result["status"] = ev["watchdog"], ev["status"]
finally:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    result["exit"] = proc.returncode
    result["log_tail"] = ev.get("tail", [])
print(json.dumps(result))
EOF

mkdir -p bench/out
OUT=bench/out/daemon-$(date +%Y%m%dT%H%M%S).txt
{ echo "# scepd run at rest, $(date -Is)"
  echo "# scepd=$SCEPD ca=$URL idle=${IDLE_SECONDS}s; $BIG certificates issued in ${ENROLL_S}s"; } >"$OUT"
for n in $SMALL $BIG; do
    cfg=$WORK/small.yaml; [[ $n -eq $BIG ]] && cfg=$WORK/big.yaml
    echo "measuring $n identities (about $((IDLE_SECONDS + 5))s) ..."
    python3 "$WORK/measure.py" "$cfg" "$n" "$IDLE_SECONDS" "${SCEPD_CMD[@]}" | tee -a "$OUT" >"$WORK/m$n.json"
done

python3 - "$WORK/m$SMALL.json" "$WORK/m$BIG.json" "$IDLE_SECONDS" "$OUT" <<'EOF'
import json, sys
small, big = (json.load(open(p)) for p in sys.argv[1:3])
idle, out = float(sys.argv[3]), sys.argv[4]
lines = []
def row(label, value, limit, unit):
    ok = value is not None and value <= limit
    shown = "n/a" if value is None else f"{value:.3f}" if unit in ("s", "s/min") else f"{value:.1f}"
    lines.append(f"{label:<44} {shown:>9} {unit:<5} target <= {limit:<6} {'PASS' if ok else 'FAIL'}")
for m in (small, big):
    n = m["n"]
    lines.append(f"--- {n} identities: start-to-ready measured as {m['ready_kind']}; "
                 f"all {n} initial jobs done at {m['all_jobs_s']:.2f}s; exit {m['exit']}")
    rss = max(m["rss_ready_kib"] or 0, m["rss_idle_kib"] or 0) / 1024
    lines.append(f"    RSS at ready {m['rss_ready_kib'] / 1024:.1f} MB, after idle "
                 f"{m['rss_idle_kib'] / 1024:.1f} MB, peak (VmHWM) {m['hwm_kib'] / 1024:.1f} MB; "
                 f"watchdog pings {m['watchdog_pings']}; STATUS={m['status']!r}")
    row(f"RSS, {n} identities (MB)", rss, 45 if m is small else 55, "MB")
    if m is big:
        row(f"start-to-ready, {n} identities", m["ready_s"], 1.0, "s")
    else:
        lines.append(f"{'start-to-ready, ' + str(n) + ' identities':<44} {m['ready_s']:>9.3f} s")
    row(f"idle CPU, {n} identities (per minute)", m["idle_cpu_s"] * 60 / m["idle_wall_s"], 0.01,
        "s/min")
print("\n".join(lines))
with open(out, "a") as f:
    f.write("".join("# " + l + "\n" for l in lines))
EOF
echo "raw numbers: $OUT"
