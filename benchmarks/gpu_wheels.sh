#!/usr/bin/env bash
# Fetch what a GPU machine without internet lacks, on a machine that reaches the package index.
#
# It assumes the GPU machine has Python 3.12 with torch, torchvision, numpy, pandas,
# matplotlib, rich, psutil, scikit-learn and nvidia-ml-py. This puts CPython 3.12
# manylinux x86_64 wheels of the rest into .whl/ (git-ignored; copy it with the clone),
# with setuptools for the editable install there. Then, on the GPU machine:
#     bash benchmarks/gpu_session.sh
#
#     bash benchmarks/gpu_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .whl
mkdir -p .whl
# The versions this machine's tests ran with, where installed here; else the newest allowed.
mapfile -t REQS < <(python - <<'PY'
import importlib.metadata as md
wanted = {"hydra-core": "", "omegaconf": "<2.4", "optuna": "", "alembic": "", "Mako": "",
          "colorlog": "", "SQLAlchemy": ">=2.0,<2.2", "greenlet": "", "codecarbon": "",
          "setuptools": ">=68", "wheel": ""}
for name, fallback in wanted.items():
    try:
        print(f"{name}=={md.version(name)}")
    except md.PackageNotFoundError:
        print(f"{name}{fallback}")
PY
)
python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl "${REQS[@]}"
python -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3  # sdist only
echo "$(ls .whl | wc -l) wheels, $(du -sh .whl | cut -f1) in .whl/"
