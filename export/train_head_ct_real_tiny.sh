#!/usr/bin/env bash
# export/head-ct-real-tiny: the DeDN and DRN trained on lesion-free slices of the training patients
# of PHE-SICH-CT-IDS (split seed 0), calibrated on the lesion-free slices of its validation patients.
# The data's licence is non-commercial (see its README): so is this bundle.
#   bash export/train_head_ct_real_tiny.sh [CKPT_DIR]      (repository root; needs the train extra)
set -euo pipefail
data=${ISL_RT_REAL_DATA:-../shared/data/phe-sich-ct-ids}
ckpt=${1:-build/ckpt-head-ct-real-tiny}
split=build/real-split

# 1. patients, never slices: 59 training, 20 validation, 20 test patients
isl-rt split "$data/labels.csv" --out "$split" --seed 0 --label-column lesion

# 2. the DeDN, reconstruction only (L1), model choice by the healthy validation slices' error
isl-rt train dedn "$data/images" --ckpt "$ckpt" --labels "$split/train.csv" --val-labels "$split/val.csv" \
  --label-column lesion --preset tiny --loss-weights 1,0,0,0 --adam-betas 0.9,0.99 --lr 1e-3 \
  --lr-schedule onecycle --batch-size 16 --steps-per-epoch 100 --max-epochs 15 --threads 2 --seed 0

# 3. the DRN on its difference images, inside the cranial cavity (the gray channel's white skull)
isl-rt train drn "$data/images" --ckpt "$ckpt" --labels "$split/train.csv" --label-column lesion \
  --preset tiny --k 4 --cavity-sides 3 --cavity-largest --threads 2 --seed 0

# 4. export (the cavity kept 4 px clear of the air around the head: at the skull base it can be
#    the space between the head and the head holder; DICOM CT read through the data's brain window:
#    its slices use 121 grey steps, integer HU through a window 120 HU wide, level 40 assumed),
#    then calibrate both thresholds on the validation patients' lesion-free slices
isl-rt export "$ckpt" --out export/head-ct-real-tiny --slice-score residual:0.1:gray:largest:4:adjacent \
  --cavity-air-margin 4 --hu-window 40,120 --notes-file export/head-ct-real-tiny.notes.md
mkdir -p build/real-val
python - "$split/split.json" "$data/images" build/real-val <<'PY'
import json, os, sys
split, images, out = sys.argv[1:]
for patient in json.load(open(split))["parts"]["val"]["groups"]:
    link = os.path.join(out, patient)
    if not os.path.lexists(link):
        os.symlink(os.path.abspath(os.path.join(images, patient)), link)
PY
# --match-level: the brain level of these patients (median gray inside the cavity), its spread and
# the size of the cavity are measured first, and every series scanned later is mapped to them
# (another site's window and field of view); --smooth 0.8: every image series is smoothed by a
# Gaussian of 0.8 px first (a JPEG history), so the thresholds are calibrated on smoothed series
isl-rt calibrate build/real-val --bundle export/head-ct-real-tiny --labels "$split/val.csv" --label-column lesion \
  --match-level --smooth 0.8 --out build/real-calibration.csv
