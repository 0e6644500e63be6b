#!/bin/bash
# predict_vs_eval.sh - examples/s of tb-predict (text in, predictions out: reading, tokenizing,
# length-sorted batches, writing) against tb-eval (pre-tokenized batches from tb-tokenize) on the
# 872 SST-2 dev sentences, for the demo's student (2L/128H) and teacher (4L/256H) shapes.
# Not part of CI (a few minutes on 2 cores).
#
#   bench/predict_vs_eval.sh [BUILD_DIR] [THREADS]      (build, 2)
#
# Each model is first fine-tuned for 150 steps on SST-2 (hf head, sequence 64, so the exported
# model means something; speed does not depend on it). Then, three times each:
#   tb-eval    --input dev batches (tokenized once beforehand, 32 per batch, padded to 64)
#              -> its examples_per_s (forward passes alone) and wall_examples_per_s (whole run)
#   tb-predict --format glue on the same sentences as a test.tsv (max sequence 64, batches of 32)
#              -> examples/s from reading the file to the renamed output, model loading excluded,
#              and the whole process (model loading included) timed from outside.
# Prints one line per run and the medians. The trained checkpoints stay in WORK (printed) for
# scripts/check-export-hf.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
threads=${2:-2}
bin=$build/bin
work=$(mktemp -d /tmp/predict-bench-XXXXXX)
vocab=$here/data/vocab/bert-base-uncased-vocab.txt
echo "work folder: $work"
"$bin/tb-tokenize" --input "$here/data/sst2/train.tsv" --format sst-2 --vocab "$vocab" --output "$work/train.tbm" \
  --max-seq-length 64 --batch-size 32 --log-level warn --progress none
"$bin/tb-tokenize" --input "$here/data/sst2/dev.tsv" --format sst-2 --vocab "$vocab" --output "$work/dev.tbm" \
  --max-seq-length 64 --batch-size 32 --no-shuffle --no-drop-last --log-level warn --progress none
{ printf 'index\tsentence\n'; tail -n +2 "$here/data/sst2/dev.tsv" | cut -f1 | awk '{print NR-1"\t"$0}'; } > "$work/test.tsv"

median() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
now() { date +%s.%N; }

for shape in student teacher; do
  sed 's/"tinybert_head": "relu"/"tinybert_head": "none"/; s/"fit_size": [0-9]*/"fit_size": 0/' \
    "$here/configs/demo-$shape.json" > "$work/$shape.json"
  "$bin/tb-finetune" --config "$work/$shape.json" --head hf --input "$work/train.tbm" --output "$work/$shape" \
    --vocab "$vocab" --max-steps 150 --lr 1e-4 --threads "$threads" --log-level warn --progress none --plot ''
  ck=$work/$shape/latest
  : > "$work/$shape.eval" ; : > "$work/$shape.evalwall"; : > "$work/$shape.pred"; : > "$work/$shape.predproc"
  for run in 1 2 3; do
    "$bin/tb-eval" --model "$ck" --input "$work/dev.tbm" --task sst-2 --json "$work/eval.json" --threads "$threads" \
      --log-level warn 2>/dev/null
    e=$(python3 -c "import json; d=json.load(open('$work/eval.json')); print(d['examples_per_s'], d['wall_examples_per_s'], d['accuracy'])")
    t0=$(now)
    "$bin/tb-predict" --model "$ck" --task sst-2 --format glue --input "$work/test.tsv" --output "$work/SST-2.tsv" \
      --max-seq-length 64 --threads "$threads" 2> "$work/predict.log"
    t1=$(now)
    p=$(sed -n 's/.*(\([0-9.]*\) examples\/s.*/\1/p' "$work/predict.log")
    proc=$(python3 -c "print(round(872 / ($t1 - $t0), 1))")
    echo "$shape run $run: tb-eval forward $(echo "$e" | cut -d' ' -f1) ex/s, whole run $(echo "$e" | cut -d' ' -f2) ex/s" \
         "(accuracy $(echo "$e" | cut -d' ' -f3)); tb-predict $p ex/s, whole process $proc ex/s"
    echo "$e" | cut -d' ' -f1 >> "$work/$shape.eval"
    echo "$e" | cut -d' ' -f2 >> "$work/$shape.evalwall"
    echo "$p" >> "$work/$shape.pred"
    echo "$proc" >> "$work/$shape.predproc"
  done
  echo "$shape medians: tb-eval forward $(median < "$work/$shape.eval") ex/s, tb-eval whole run" \
       "$(median < "$work/$shape.evalwall") ex/s; tb-predict $(median < "$work/$shape.pred") ex/s," \
       "tb-predict whole process $(median < "$work/$shape.predproc") ex/s"
done
