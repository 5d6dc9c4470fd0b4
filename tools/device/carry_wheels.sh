#!/usr/bin/env bash
# The Python packages nas-cntk imports that the lent GPU machine's image lacks, as wheels for a device
# call to carry (it has no network): Optuna and its SQL store, mlflow-skinny (the tracking client and
# its SQLite store; the full mlflow adds only the server and UI) and what they import that the image
# does not hold (its package list: the device's KINDS.md), found by importing and running both with
# nothing else. typing-extensions and protobuf are there, but pydantic and MLflow's generated protobuf
# code need newer ones than may be. Versions: those the project is tested with.
#
#   tools/device/carry_wheels.sh [DIR [PYTHON_VERSION]]   # default: .whl (ignored) for Python 3.12
#
# benchmarks/gpu_check.sh installs them with pip --no-index. tools/device/rehearse.sh fetches the same
# versions for this machine's Python into .whl-cp311 for its CPU rehearsal.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${1:-.whl}
version=${2:-3.12}
packages=(
  optuna==5.1.0 alembic==1.20.1 sqlalchemy==2.1.9 mako==1.4.3 colorlog==6.12.0
  mlflow-skinny==3.17.2 sqlparse==0.6.1 cachetools==7.3.3 importlib-metadata==9.1.0 databricks-sdk==0.167.0
  fastapi==0.165.0 starlette==1.10.0 cryptography==50.0.2 cffi==2.1.1
  pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
  opentelemetry-api==1.45.2 opentelemetry-sdk==1.45.2 opentelemetry-proto==1.45.2
  opentelemetry-semantic-conventions==0.66b2 typing-extensions==4.16.0 protobuf==7.36.2
)
rm -rf "$dir"
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version "$version" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$dir" "${packages[@]}"
echo "$dir: $(ls "$dir" | wc -l) wheels, $(du -sh "$dir" | cut -f1)"
