#!/usr/bin/env bash
# A search as a Slurm job array: one task per GPU, each running the same `nas-cntk search` on one study,
# shared through a PostgreSQL database and logged to an MLflow tracking server (docs/search.md, Scaling
# out). A preempted task is requeued and resumes; each task ends once the study has --trials finished trials.
#
#   sbatch deploy/slurm-array.sh
#
# Edit the hosts, the environment and the search's options. The password: in ~/.pgpass
# (postgres.example.org:5432:*:nas:PASSWORD, chmod 600), which psycopg reads, so that neither this script
# nor a command line that other users can list holds it.
#SBATCH --job-name=nas-cntk-search
#SBATCH --array=0-3
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=4
#SBATCH --time=24:00:00
#SBATCH --requeue
#SBATCH --output=nas-cntk-search-%A_%a.out
set -euo pipefail

# The project with its postgres extra, from a checkout of it:
#   python3 -m venv ~/nas-cntk && ~/nas-cntk/bin/pip install -e '.[postgres]'
source "${HOME}/nas-cntk/bin/activate"
export NAS_CNTK_DATA_DIR="${NAS_CNTK_DATA_DIR:-${HOME}/.cache/nas-cntk}"

srun nas-cntk search --storage postgresql://nas@postgres.example.org/optuna \
    --tracking-uri http://mlflow.example.org:5000 \
    --space nasbench201 --study nb201 --trials 1000 \
    --trials-dir "${SLURM_SUBMIT_DIR}/trials-${SLURM_ARRAY_TASK_ID}"
