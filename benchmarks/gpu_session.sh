#!/usr/bin/env bash
# Everything to check on a machine with an NVIDIA GPU, in one run: each step under its own
# time limit, the figures on stdout and every output in one file.
#
# Prepare the wheels it installs with `bash benchmarks/gpu_wheels.sh` (on a machine with
# internet), copy the clone with .whl/ to the GPU machine and run it there
# (benchmarks/README.md, "Running the GPU check"); it writes $OUT/gpu_session.tar.gz.
#     bash benchmarks/gpu_session.sh [BUDGET_S]      # default 480 s in all
# It never changes the card's clocks, power limit or MIG settings.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d)}
BUDGET_S=${1:-480}
START_S=$(date +%s)
LOG="$OUT/gpu_session"
mkdir -p "$LOG"

left() { echo $(( BUDGET_S - ($(date +%s) - START_S) )); }
step() {  # step NAME SECONDS COMMAND...: run within min(SECONDS, what is left), logged
    local name=$1 want=$2; shift 2
    local limit; limit=$(left); (( want < limit )) && limit=$want
    if (( limit < 20 )); then echo "== $name: skipped, $(left) s left"; return 0; fi
    echo "== $name (limit ${limit} s)"
    local t0; t0=$(date +%s)
    timeout "$limit" "$@" >"$LOG/$name.txt" 2>&1
    local rc=$?
    echo "== $name: exit $rc after $(( $(date +%s) - t0 )) s"
    tail -n 40 "$LOG/$name.txt"
}

# What the machine lacks, into a venv that sees its own torch; sweeper installed editable
# (its models, datasets and conf resolve as sweeper.models, ... only from an install).
VENV=/tmp/sweeper-venv
if python3 -m venv --system-site-packages "$VENV" 2>"$LOG/venv.txt"; then
    PIP=("$VENV/bin/python" -m pip)
else  # no ensurepip here: a venv without pip, filled by the system's pip (>= 22.3)
    python3 -m venv --without-pip --system-site-packages "$VENV" || exit 3
    PIP=(python3 -m pip --python "$VENV/bin/python")
fi
"${PIP[@]}" install -q --no-index --no-deps .whl/*.whl || exit 3
"${PIP[@]}" install -q --no-index --no-deps --no-build-isolation -e . || exit 3
# shellcheck disable=SC1091
. "$VENV/bin/activate"
python - <<'PY' 2>&1 | tee "$LOG/machine.txt"
import platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda",
      torch.version.cuda, "available", torch.cuda.is_available())
try:
    import pynvml
    pynvml.nvmlInit()
    h = pynvml.nvmlDeviceGetHandleByIndex(0)
    name = pynvml.nvmlDeviceGetName(h)
    print("gpu", name.decode() if isinstance(name, bytes) else name, "driver",
          pynvml.nvmlSystemGetDriverVersion(), "limit W",
          pynvml.nvmlDeviceGetEnforcedPowerLimit(h) / 1000)
except Exception as e:  # the steps below say the same, each in one line
    print("no NVML here:", type(e).__name__, e)
PY

# 1. sweeper's phases against an independent raw NVML reader, the README's main command and
#    the forecast benchmark on cuda (benchmarks/gpu_check.py; records the table to keep).
step gpu_check 300 python benchmarks/gpu_check.py --json "$LOG/gpu_check.json"
# 2. The study's protocol (conf/experiment/study.yaml: a 2 s pause and a measured test pass
#    after every epoch at the training batch size, all training images, one loader worker)
#    on two of its networks (synthetic CIFAR-sized data: no download); the test set is
#    passed 5 times, as the study's, so each per-epoch test phase is the study's quantity.
step study_smoke 150 python -m sweeper -m +experiment=study_smoke device=cuda \
    dataset=synthetic dataset.image_size=32 dataset.channels=3 dataset.n_samples=2000 \
    inference.passes=5 model=resnet18,mobilenetv2 batch=64,256 \
    "storage.url=sqlite:///$LOG/study_smoke.db" "hydra.sweep.dir=$LOG/multirun"
python - "$LOG/study_smoke.db" <<'PY' 2>&1 | tee "$LOG/study_phases.txt" | tail -n 40
import sqlite3, sys
with sqlite3.connect(sys.argv[1]) as conn:  # each run's phases: one test pass per epoch
    for row in conn.execute(
            'select r.model, r.batch, p.kind, p."index", p.samples, p.steps, '
            'round(p.duration_s, 3), round(p.energy_j, 2), p.low_resolution '
            'from phases p join runs r on r.id = p.run_id order by p.id'):
        print(*row)
PY
# 3. What the full study (143 runs on CIFAR-10) would cost here, from those runs (nothing
#    trained; no CIFAR-10 needed: its sizes come from the data set's config).
step study_estimate 40 python -m sweeper -m +experiment=study mode=estimate device=cuda \
    "storage.url=sqlite:///$LOG/study_smoke.db" "hydra.sweep.dir=$LOG/estimate"

tar czf "$OUT/gpu_session.tar.gz" -C "$OUT" gpu_session
echo "== done in $(( $(date +%s) - START_S )) s; outputs in $OUT/gpu_session.tar.gz"
