#!/usr/bin/env bash
# benchmarks/gpu_check.sh rehearsed on this CPU (SCALE=tiny: tiny sizes, --device cpu, Triton in its
# interpreter), from what a device call carries alone: a Python environment holding only packages the
# device image has (torch's CPU build, Triton, Numba, numpy, pandas, pytest, ...; made once), the
# wheels of tools/device/carry_wheels.sh for its Python, .data/cifar10.tar.gz, and no ../shared.
#
#   tools/device/rehearse.sh [OUT]   # default OUT: a new temporary folder
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=${REHEARSAL_VENV:-/tmp/nas-cntk-image-venv}
version=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
wheels=.whl-cp${version/./}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet torch==2.13.0
  "$venv/bin/pip" install --quiet numpy pandas scipy matplotlib numba tqdm pyyaml pytest packaging "triton>=3.7.1" \
    click cloudpickle requests markupsafe anyio h11 annotated-doc zipp
fi
[ -d "$wheels" ] || tools/device/carry_wheels.sh "$wheels" "$version"
if [ ! -f .data/cifar10.tar.gz ]; then
  echo ".data/cifar10.tar.gz is missing: docs/benchmark.md#the-gpu-check makes it" >&2
  exit 1
fi
env -u NAS_CNTK_DATA_DIR SCALE=tiny PY="$venv/bin/python" WHEELS="$wheels" OUT="${1:-$(mktemp -d)}" \
  bash benchmarks/gpu_check.sh
