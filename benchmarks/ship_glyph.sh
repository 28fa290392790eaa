#!/usr/bin/env bash
# Ship a trained glyph checkpoint and re-measure everything on it.
#
#   benchmarks/ship_glyph.sh runs/glyph_scene/export
#
# 1. localizes the checkpoint on pairs of equal word length, the pairs neutralization meets
#    (benchmarks/localize_glyph.py --same-length: its layer map and held-out flips/SSIM);
# 2. installs it as the package's weights (safetext/models/glyph/weights) and its map as the glyph preset
#    (safetext/patching/presets/glyph.yaml);
# 3. re-runs every glyph benchmark on the installed weights, sequentially, 2 threads each, logging to
#    runs/ship_logs/ (about an hour on 2 CPU cores for the 64x128 scene model).
# Review the results (git diff benchmarks/results) before committing the weights: each weight commit grows
# the repository by ~9 MB.
set -u
MODEL=${1:?usage: benchmarks/ship_glyph.sh MODEL_DIR}
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
ST=${SAFETEXT:-.venv/bin/safetext}
export OMP_NUM_THREADS=2 MKL_NUM_THREADS=2
LOGS=runs/ship_logs
mkdir -p "$LOGS"
step() { echo "$(date +%H:%M:%S) $*" | tee -a "$LOGS/steps.log"; }

step "localize $MODEL"
"$PY" benchmarks/localize_glyph.py --model "$MODEL" --same-length --threads 2 > "$LOGS/localize.log" 2>&1 || { step "localize failed"; exit 1; }
rm -rf safetext/models/glyph/weights && cp -r "$MODEL" safetext/models/glyph/weights
{
  echo "# Layer map of the shipped glyph weights, found by \`python benchmarks/localize_glyph.py\`"
  echo "# (safetext localize_layers, OCR scorer, 32 prompt pairs of equal word length, default budget = 25% of the"
  echo "# text layers)."
  echo "# Held-out results: benchmarks/results/localize_glyph.md."
  cat benchmarks/results/glyph_layer_map.yaml
} > safetext/patching/presets/glyph.yaml
step "installed weights and preset"
"$PY" benchmarks/glyph_eval.py --threads 2 > "$LOGS/glyph_eval.log" 2>&1; step "glyph_eval rc=$?"
"$ST" bench toxic --threads 2 --no-progress > "$LOGS/toxic.log" 2>&1; step "bench toxic rc=$?"
"$PY" benchmarks/edit_glyph.py --threads 2 > "$LOGS/edit.log" 2>&1; step "edit_glyph rc=$?"
"$PY" benchmarks/edit_glyph.py --threads 2 --same-length --name edit_glyph_same_length > "$LOGS/edit_same.log" 2>&1; step "edit_glyph (same length) rc=$?"
"$ST" bench overhead --threads 2 > "$LOGS/overhead_glyph.log" 2>&1; step "bench overhead rc=$?"
"$PY" benchmarks/localize_glyph.py --threads 2 --budget 2 --results benchmarks/results/localize_glyph_2layers > "$LOGS/localize2.log" 2>&1; step "localize (2 layers) rc=$?"
"$PY" benchmarks/edit_glyph.py --threads 2 --layer-map benchmarks/results/localize_glyph_2layers/glyph_layer_map.yaml --name edit_glyph_2layers > "$LOGS/edit2.log" 2>&1; step "edit_glyph (2 layers) rc=$?"
"$PY" benchmarks/edit_glyph.py --threads 2 --layer-map benchmarks/results/localize_glyph_2layers/glyph_layer_map.yaml --region text --name edit_glyph_2layers_region > "$LOGS/edit2_region.log" 2>&1; step "edit_glyph (2 layers, region) rc=$?"
"$PY" benchmarks/edit_glyph.py --threads 2 --layer-map benchmarks/results/localize_glyph_2layers/glyph_layer_map.yaml --region auto --name edit_glyph_2layers_auto > "$LOGS/edit2_auto.log" 2>&1; step "edit_glyph (2 layers, auto region) rc=$?"
"$PY" benchmarks/lora_compare.py > "$LOGS/lora_compare.log" 2>&1; step "lora_compare rc=$?"
"$PY" benchmarks/service_load.py > "$LOGS/service_load.log" 2>&1; step "service_load rc=$?"
step "done: update docs/models/glyph.md, benchmarks/README.md and docs/images/quickstart_side_by_side.png"
