#!/usr/bin/env bash
# Reproduces the training stage of export/head-ct-tiny: healthy phantom studies only, tiny preset,
# CPU. Run from the repository root in an environment with `pip install ".[train]"`.
# Calibration and export follow in export/README.md.
set -euo pipefail
CKPT=${CKPT:-build/ckpt-head-ct-tiny}
DATA=${DATA:-phantom:100:1000}   # 100 healthy phantom studies, study seeds 1000..1099

isl-rt train dedn "$DATA" --ckpt "$CKPT" --preset tiny --seed 0 --threads 2 \
  --batch-size 8 --steps-per-epoch 300 --max-epochs 12
isl-rt train drn "$DATA" --ckpt "$CKPT" --preset tiny --k 4 --seed 0 --threads 2 \
  --max-series 40
