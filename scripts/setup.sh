#!/usr/bin/env bash
# Set up a machine to run and test bida from this source tree, in one command:
#   1. system packages the tests drive (Debian/Ubuntu, as root or with sudo): headless
#      Chromium + its driver (report tests), Slurm + munge (the one-node cluster test);
#   2. the CPU torch wheel, then bida in editable mode with its test extras;
#   3. the rodent skull-strip networks used by `bida evaluate` (needs internet once).
# After it, `python3 -m pytest -q` needs nothing else. Used by the README's first command and
# by .ci/run. Without apt (macOS, Fedora, ...) step 1 is skipped with a note; install
# chromium + chromedriver yourself (Slurm is optional: its test skips with a reason).
#
# Options: --no-system (skip step 1), --no-fetch (skip step 3).
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1
PYTHON=${PYTHON:-python3}
TORCH_VERSION=2.13.0
SYSTEM=1
FETCH=1
for arg in "$@"; do
  case "$arg" in
    --no-system) SYSTEM=0 ;;
    --no-fetch) FETCH=0 ;;
    -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option $arg" >&2; exit 64 ;;
  esac
done

# Debian names; Ubuntu ships the driver as chromium-chromedriver.
APT_PACKAGES=(chromium chromium-driver slurmctld slurmd slurm-client munge)

have_all() {
  command -v chromium >/dev/null && command -v chromedriver >/dev/null \
    && command -v sbatch >/dev/null && command -v munged >/dev/null
}

install_system() {
  if have_all; then
    return 0
  fi
  if ! command -v apt-get >/dev/null; then
    echo "setup.sh: no apt-get here; install chromium and chromedriver with your package" \
      "manager (Slurm + munge optional), then re-run with --no-system" >&2
    return 0
  fi
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null; then
      echo "setup.sh: not root and no sudo; skipping system packages (${APT_PACKAGES[*]})" >&2
      return 0
    fi
    sudo="sudo"
  fi
  local packages=("${APT_PACKAGES[@]}")
  $sudo apt-get update -qq
  if ! apt-cache show chromium-driver >/dev/null 2>&1; then
    packages=("${packages[@]/chromium-driver/chromium-chromedriver}")
  fi
  # policy-rc.d keeps the Slurm and munge services from starting: the test starts its own.
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${packages[@]}" >/dev/null
}

if [ "$SYSTEM" -eq 1 ]; then
  install_system
fi
"$PYTHON" -m pip install -q "torch==${TORCH_VERSION}"
"$PYTHON" -m pip install -q -e ".[test]"
# rodent skull-strip networks for cDSC (downloaded from PyPI and converted once; the GPL rat
# weights are never part of bida)
if [ "$FETCH" -eq 1 ]; then
  "$PYTHON" -m bida_app.evaluation.fetch --species all
fi
echo "setup.sh: done; run the tests with: $PYTHON -m pytest -q"
