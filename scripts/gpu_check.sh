#!/usr/bin/env bash
# One-shot GPU check of bida: run it once on the first CUDA machine (about 5-8 minutes).
#
#   scripts/gpu_check.sh [REPORT.md]
#
# Writes benchmarks/results/gpu-<UTC date>.md (or REPORT.md) with
#   * s/volume and peak VRAM of BiDA (bf16, auto batch) vs the naive per-slice fp32 loop,
#     for the shipped `small` preset and the `default` preset (benchmarks/inference.py);
#   * training steps/s of the `default` preset at batch 64 (benchmarks/train_speed.py);
#   * a demo participant run with --method bida --device cuda and its timings;
#   * GPU, driver, torch and CUDA versions.
# Without a CUDA device visible to torch it prints one line and exits 0.
# Environment: PYTHON (default python3), GPU_CHECK_DEVICE (default cuda; e.g. cuda:1).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "gpu_check: no CUDA device visible to torch (CUDA_VISIBLE_DEVICES, --gpus all, --nv?); nothing measured"
    exit 0
fi

REPORT=${1:-benchmarks/results/gpu-$(date -u +%Y-%m-%d).md}
mkdir -p "$(dirname "$REPORT")"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/bida-gpu-check.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
LOG="$TMP/log.txt"
START=$(date +%s)

step() {  # step NAME TIMEOUT_S CMD... : run, keep the output, never abort the whole check
    local name=$1 limit=$2
    shift 2
    echo "gpu_check: $name ..." >&2
    local t0 rc
    t0=$(date +%s)
    set +e
    timeout "$limit" "$@" >"$TMP/$name.out" 2>&1
    rc=$?
    set -e
    echo "$name rc=$rc seconds=$(($(date +%s) - t0))" >>"$LOG"
    [ "$rc" -eq 0 ] || tail -5 "$TMP/$name.out" >&2
}

step infer_small 110 "$PY" benchmarks/inference.py --preset small --devices cuda \
    --json "$TMP/infer_small.json"
step infer_default 130 "$PY" benchmarks/inference.py --preset default --devices cuda \
    --json "$TMP/infer_default.json"
step train_default 70 "$PY" benchmarks/train_speed.py --preset default --batch 64 \
    --device "$DEVICE" --json "$TMP/train_default.json"
step demo_data 40 "$PY" -m bida_app.cli.main demo-data "$TMP/demo"
step demo_run 150 "$PY" -m bida_app.cli.main "$TMP/demo" "$TMP/demo_out" participant \
    --method bida --device "$DEVICE" -w "$TMP/demo_work" --skip_bids_validator

"$PY" - "$TMP" "$REPORT" "$START" "$DEVICE" <<'EOF'
"""Assemble the markdown report from the step outputs."""
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

tmp, report, start, device = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
steps = dict(
    (line.split()[0], line.split()[1:]) for line in (tmp / "log.txt").read_text().splitlines()
)


def smi(field: str) -> str:
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader"],
            capture_output=True, text=True, check=True, timeout=30,
        ).stdout
        return out.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "n/a"


dev = torch.device(device)
idx = dev.index if dev.index is not None else torch.cuda.current_device()
lines = [
    f"# bida GPU check, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
    "",
    "Written by `scripts/gpu_check.sh` "
    f"({round(time.time() - start)} s in all).",
    "",
    "| item | value |",
    "|---|---|",
    f"| GPU | {torch.cuda.get_device_name(idx)} |",
    f"| GPU memory | {torch.cuda.get_device_properties(idx).total_memory / 2**30:.1f} GiB |",
    f"| driver | {smi('driver_version')} |",
    f"| torch | {torch.__version__} |",
    f"| CUDA (torch build) | {torch.version.cuda} |",
    f"| cuDNN | {torch.backends.cudnn.version()} |",
    f"| bf16 supported | {torch.cuda.is_bf16_supported()} |",
    f"| host | {platform.node()}, {platform.processor() or platform.machine()} |",
    "",
    "## BiDA inference: seconds per 144×144×64 volume (2 planes × 16 steps)",
    "",
    "`python benchmarks/inference.py --preset P --devices cuda` (random weights of the preset;",
    "naive = fp32, contiguous, one slice per call; * = extrapolated from the slices run).",
    "",
    "| preset | method | dtype | batch | s/volume (median) | s/volume (best) | peak VRAM GB |"
    " naive/bida |",
    "|---|---|---|---|---|---|---|---|",
]
for preset in ("small", "default"):
    path = tmp / f"infer_{preset}.json"
    if not path.exists():
        lines.append(f"| {preset} | failed: {' '.join(steps.get('infer_' + preset, []))} "
                     "| | | | | | |")
        continue
    rows = [r for r in json.loads(path.read_text())["rows"] if r["device"].startswith("cuda")]
    naive = next((r for r in rows if r["method"] == "naive"), None)
    for r in rows:
        ratio = naive["s_per_volume_best"] / r["s_per_volume_best"] if naive else float("nan")
        star = "*" if r["extrapolated"] else ""
        lines.append(
            f"| {preset} | {r['method']} | {r['dtype']} | {r['batch']} | "
            f"{r['s_per_volume_median']:.2f}{star} | {r['s_per_volume_best']:.2f}{star} | "
            f"{r['peak_mem_gb']:.2f} | {ratio:.1f} |"
        )
lines += ["", "## Training", "",
          "`python benchmarks/train_speed.py --preset default --batch 64`", ""]
path = tmp / "train_default.json"
if path.exists():
    t = json.loads(path.read_text())
    lines.append(
        f"`default` preset ({t['n_params'] / 1e6:.1f} M parameters), batch {t['batch']}, "
        f"{t['dtype']}: **{t['steps_per_s']:.2f} steps/s**, peak VRAM {t['peak_vram_gb']:.2f} GB."
    )
else:
    lines.append(f"failed: {' '.join(steps.get('train_default', []))}")
lines += ["", "## Demo participant run", "",
          f"`bida demo-data DEMO && bida DEMO OUT participant --method bida --device {device}`",
          ""]
run = steps.get("demo_run", ["not run"])
lines.append(f"Whole command: {' '.join(run)}.")
for sidecar in sorted((tmp / "demo_out").rglob("*.json")):
    try:
        data = json.loads(sidecar.read_text())
    except ValueError:
        continue
    if "BidaTimings" in data:
        compute = data.get("Compute", {})
        lines.append(
            f"- `{sidecar.name}`: sampler seconds {data['BidaTimings']}, device "
            f"{compute.get('Device')} ({compute.get('DeviceName')}, {compute.get('ComputeDtype')})"
        )
lines += ["", "## Raw step log", "", "```", (tmp / "log.txt").read_text().strip(), "```", ""]
report.write_text("\n".join(lines))
print(f"gpu_check: wrote {report}")
EOF
