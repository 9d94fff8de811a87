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

# Debian names; Ubuntu calls them chromium-browser and chromium-chromedriver.
BROWSER_PACKAGES=(chromium chromium-driver)
CLUSTER_PACKAGES=(slurmctld slurmd slurm-client munge)

have_all() {
  command -v chromium >/dev/null && command -v chromedriver >/dev/null \
    && command -v sbatch >/dev/null && command -v munged >/dev/null
}

# apt_install WHAT-FOR PACKAGE...: install, or warn (and go on) when apt cannot.
apt_install() {
  local what=$1
  shift
  # The packaged services are not used: the SLURM test starts its own daemons.
  if ! $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends "$@" >/dev/null; then
    echo "setup.sh: WARNING: apt-get could not install $* ($what); install them yourself" >&2
  fi
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
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null; then
      echo "setup.sh: not root and no sudo; skipping system packages" \
        "(${BROWSER_PACKAGES[*]} ${CLUSTER_PACKAGES[*]})" >&2
      return 0
    fi
    SUDO="sudo"
  fi
  $SUDO apt-get update -qq
  local browser=("${BROWSER_PACKAGES[@]}")
  if ! apt-cache show chromium >/dev/null 2>&1; then
    browser=(chromium-browser chromium-chromedriver)
  fi
  apt_install "the report tests need them" "${browser[@]}"
  apt_install "the SLURM test skips without them" "${CLUSTER_PACKAGES[@]}"
}

if [ "$SYSTEM" -eq 1 ]; then
  install_system
fi
if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
  echo "setup.sh: $PYTHON has no pip; install it (Debian: apt-get install python3-pip" \
    "python3-venv) or use a virtualenv, then re-run" >&2
  exit 1
fi
"$PYTHON" -m pip install -q "torch==${TORCH_VERSION}"
"$PYTHON" -m pip install -q -e ".[test]"
# rodent skull-strip networks for cDSC (downloaded from PyPI and converted once; the GPL rat
# weights are never part of bida)
if [ "$FETCH" -eq 1 ]; then
  "$PYTHON" -m bida_app.evaluation.fetch --species all
fi
echo "setup.sh: done; run the tests with: $PYTHON -m pytest -q"
