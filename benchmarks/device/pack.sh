#!/usr/bin/env bash
# Prepare, on this machine, what a GPU machine lent through the `device` tool needs beside the working
# tree (it gets the repository only: no ../shared, no network): the training and validation sets of
# configs/mlfuse_train.toml and the PyWavelets wheel its Python lacks. From the repository root:
#   bash benchmarks/device/pack.sh [DEST]      # DEST: default .device (ignored by git)
# then pass carry=[".device"] to the device call running benchmarks/device/run.sh. About 40 MB.
# SHARED: the reference folder (default ../shared); NO_WHEEL=1 skips the wheel (tests).
set -euo pipefail
cd "$(dirname "$0")/../.."
dest=${1:-.device}
shared=${SHARED:-../shared}
mkdir -p "$dest/shared/data/splits" "$dest/shared/data/roadscene" "$dest/whl"
cp "$shared/data/splits/roadscene_didfuse_split.csv" "$dest/shared/data/splits/"
cp -r "$shared/data/roadscene/train" "$dest/shared/data/roadscene/"
for pair in ct_mri pet_mri spect_mri; do
  mkdir -p "$dest/shared/data/harvard/$pair"
  cp -r "$shared/data/harvard/$pair/train" "$shared/data/harvard/$pair/val" "$dest/shared/data/harvard/$pair/"
done
if [ -z "${NO_WHEEL:-}" ] && ! ls "$dest"/whl/pywavelets-*.whl >/dev/null 2>&1; then
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$dest/whl" "PyWavelets>=1.4"
fi
du -sh "$dest"
