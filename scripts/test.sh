#!/usr/bin/env bash
# Install what the tests need and run them. This is the README's test command and what CI runs
# (.ci/run), so the two cannot drift.
#
#   bash scripts/test.sh [PYTEST_ARGS...]      (from anywhere; it works in the repository root)
#
# On a fresh Debian machine run it as root (or as a user with sudo). It installs, only when their
# commands are missing, the system packages some tests drive: chromium and chromium-driver (the
# report's browser tests) and dcmtk and dicom3tools (the DICOM node's tests send with storescu and
# validate with dciodvfy); without them those tests skip and say why. Then a virtual environment
# ($ISL_RT_TEST_VENV, default .venv) with the CPU build of torch and the train and test extras,
# and pytest with the arguments given.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=()
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    packages+=(chromium chromium-driver)
fi
if ! command -v dciodvfy >/dev/null || ! command -v dcmdump >/dev/null; then
    packages+=(dcmtk dicom3tools)
fi
if [ "${#packages[@]}" -gt 0 ]; then
    as_root=()
    if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then
        as_root=(sudo)
    fi
    if ! command -v apt-get >/dev/null; then
        echo "scripts/test.sh: no apt-get here: install ${packages[*]} yourself; the tests that need them skip" >&2
    elif [ "$(id -u)" -ne 0 ] && [ "${#as_root[@]}" -eq 0 ]; then
        echo "scripts/test.sh: not root and no sudo: cannot install ${packages[*]}; the tests that need them skip" >&2
    else
        ${as_root[@]+"${as_root[@]}"} apt-get update -qq
        ${as_root[@]+"${as_root[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
    fi
fi

venv="${ISL_RT_TEST_VENV:-.venv}"
python3 -m venv "$venv"
# shellcheck disable=SC1091
. "$venv/bin/activate"
python -m pip install --upgrade pip >/dev/null
pip install torch==2.13.0 && pip install ".[train,test]"
pytest "$@"
