#!/usr/bin/env bash
# Reproduces the training stage of export/head-ct-tiny: healthy phantom studies only, tiny preset,
# CPU. Run from the repository root in an environment with `pip install ".[train]"`.
# Calibration and export follow in export/README.md.
set -euo pipefail
CKPT=${CKPT:-build/ckpt-head-ct-tiny}
DEDN_DATA=${DEDN_DATA:-phantom:100:1000}   # 100 healthy phantom studies, study seeds 1000..1099
DRN_DATA=${DRN_DATA:-phantom:40:3000}      # 40 other healthy studies (seeds 3000..3039), unseen by the DeDN

isl-rt train dedn "$DEDN_DATA" --ckpt "$CKPT" --preset tiny --seed 0 --threads 2 \
  --batch-size 8 --steps-per-epoch 300 --max-epochs 12
# the DRN learns the difference images of slices the DeDN never saw, as at scan time;
# its synthetic disorders are lesions pasted into the slices (--disorder lesion, the default)
isl-rt train drn "$DRN_DATA" --ckpt "$CKPT" --preset tiny --k 4 --seed 0 --threads 2
