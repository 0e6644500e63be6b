#!/bin/sh
# finetune_sst2.sh - the SST-2 experiment of tb-finetune, side by side with PyTorch (run outside CI).
#
#   1. a WordPiece vocabulary (tb-vocab) learned on WikiText-2 (validation + test, English);
#   2. masked-LM pre-training of a small BERT from random weights on that corpus (tb-finetune --mlm);
#   3. fine-tuning on GLUE SST-2 train (tb-finetune, dropout off, the starting point saved as step-0);
#   4. the same fine-tuning in PyTorch from that step-0 checkpoint and the same batch file
#      (tests/reference/sst2_compare.py), then tb-eval and the PyTorch dev accuracy side by side.
# Passes when the C dev accuracy is >= 0.78 and the PyTorch one is within 1 point of it.
#
# Usage: bench/finetune_sst2.sh [--smoke]
#   --smoke   a few batches of each step (SMOKE_MLM_BATCHES [4], SMOKE_FT_BATCHES [16]), to check the
#             wiring and measure steps/s
# Environment (defaults in brackets):
#   TB_BIN [build/bin]  SHARED [../shared/data]  WORK [/tmp/tb-sst2]  THREADS [2]
#   VOCAB_SIZE [8000]  LAYERS [4]  HIDDEN [256]  HEADS [4]  FFN [1024]
#   MLM_EPOCHS [40]  MLM_LR [5e-4]  MLM_SEQ [128]  FT_EPOCHS [3]  FT_LR [1e-4]  FT_SEQ [64]  BATCH [32]
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${TB_BIN:-$ROOT/build/bin}
SHARED=${SHARED:-$ROOT/../shared/data}
WORK=${WORK:-/tmp/tb-sst2}
THREADS=${THREADS:-2}
VOCAB_SIZE=${VOCAB_SIZE:-8000}
LAYERS=${LAYERS:-4} HIDDEN=${HIDDEN:-256} HEADS=${HEADS:-4} FFN=${FFN:-1024}
MLM_EPOCHS=${MLM_EPOCHS:-40} MLM_LR=${MLM_LR:-5e-4} MLM_SEQ=${MLM_SEQ:-128}
FT_EPOCHS=${FT_EPOCHS:-3} FT_LR=${FT_LR:-1e-4} FT_SEQ=${FT_SEQ:-64} BATCH=${BATCH:-32}
PY=/usr/bin/python3
SMOKE=0
[ "${1:-}" = "--smoke" ] && SMOKE=1
MLM_LIMIT=0 FT_LIMIT=0
if [ $SMOKE = 1 ]; then MLM_EPOCHS=1 MLM_LIMIT=${SMOKE_MLM_BATCHES:-4} FT_EPOCHS=1 FT_LIMIT=${SMOKE_FT_BATCHES:-16}; fi

for f in "$SHARED/corpus/wikitext-2.valid.txt" "$SHARED/corpus/wikitext-2.test.txt" "$SHARED/glue/SST-2/train.tsv" \
         "$SHARED/glue/SST-2/dev.tsv"; do
    [ -r "$f" ] || { echo "finetune_sst2: missing $f (set SHARED to the shared data folder)" >&2; exit 1; }
done
for b in tb-vocab tb-tokenize tb-finetune tb-eval; do
    [ -x "$BIN/$b" ] || { echo "finetune_sst2: $BIN/$b not built (cmake --build build)" >&2; exit 1; }
done
mkdir -p "$WORK"
cd "$WORK"
log() { echo "[finetune_sst2] $(date -u +%H:%M:%S) $*" >&2; }
now() { date +%s; }

log "1. corpus and vocabulary ($VOCAB_SIZE tokens)"
cat "$SHARED/corpus/wikitext-2.valid.txt" "$SHARED/corpus/wikitext-2.test.txt" > corpus.txt
[ -s vocab.txt ] || "$BIN/tb-vocab" --input corpus.txt --format wikitext --output vocab.txt --vocab-size "$VOCAB_SIZE" --log-level warn
V=$(wc -l < vocab.txt)
cat > model.json <<JSON
{"vocab_size": $V, "hidden_size": $HIDDEN, "num_hidden_layers": $LAYERS, "num_attention_heads": $HEADS,
 "intermediate_size": $FFN, "max_position_embeddings": 128, "type_vocab_size": 2, "hidden_act": "gelu",
 "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1, "tinybert_mlm_head": true}
JSON

log "2. masked-LM pre-training: $MLM_EPOCHS epochs of WikiText-2 (packed, sequence $MLM_SEQ, batch $BATCH)"
rm -rf pre mlm.tbs
"$BIN/tb-tokenize" --input corpus.txt --format wikitext --pack --vocab vocab.txt --max-seq-length "$MLM_SEQ" \
    --batch-size "$BATCH" --epochs "$MLM_EPOCHS" --max-batches "$MLM_LIMIT" --output mlm.tbs --progress none --log-level warn
t0=$(now)
"$BIN/tb-finetune" --mlm --config model.json --vocab vocab.txt --input mlm.tbs --epochs 1 --lr "$MLM_LR" \
    --output pre --save-every 1000 --threads "$THREADS" --progress plain --log-level warn
t1=$(now)
MLM_STEPS=$(grep -c '"event":"step"' pre/metrics.jsonl)
MLM_SECONDS=$((t1 - t0))
log "   $MLM_STEPS MLM steps in $MLM_SECONDS s"

log "3. fine-tuning on SST-2 train ($FT_EPOCHS epochs, sequence $FT_SEQ, dropout off)"
rm -rf ft train.tbs dev.tbs
"$BIN/tb-tokenize" --input "$SHARED/glue/SST-2/train.tsv" --format sst-2 --vocab vocab.txt --max-seq-length "$FT_SEQ" \
    --batch-size "$BATCH" --epochs "$FT_EPOCHS" --max-batches "$FT_LIMIT" --output train.tbs --progress none --log-level warn
"$BIN/tb-tokenize" --input "$SHARED/glue/SST-2/dev.tsv" --format sst-2 --vocab vocab.txt --max-seq-length "$FT_SEQ" \
    --batch-size 64 --no-shuffle --no-drop-last --output dev.tbs --progress none --log-level warn
t0=$(now)
"$BIN/tb-finetune" --init pre --head relu --input train.tbs --dev dev.tbs --epochs 1 --lr "$FT_LR" --no-dropout \
    --save-init --eval-every 500 --output ft --threads "$THREADS" --progress plain --log-level warn
t1=$(now)
FT_STEPS=$(grep -c '"event":"step"' ft/metrics.jsonl)
FT_SECONDS=$((t1 - t0))
log "   $FT_STEPS fine-tuning steps in $FT_SECONDS s"
"$BIN/tb-eval" --model ft --input dev.tbs --json c_eval.json --threads "$THREADS" --log-level warn

log "4. the same fine-tuning in PyTorch from ft/step-0"
"$PY" "$ROOT/tests/reference/sst2_compare.py" --init ft/step-0 --train train.tbs --dev dev.tbs --lr "$FT_LR" \
    --threads "$THREADS" --out torch.json

"$PY" - "$MLM_STEPS" "$FT_STEPS" "$SMOKE" "$MLM_SECONDS" "$FT_SECONDS" "$(cat /proc/loadavg)" <<'PYEOF'
import json, sys
mlm_steps, ft_steps, smoke = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
mlm_s, ft_s, load = max(int(sys.argv[4]), 1), max(int(sys.argv[5]), 1), sys.argv[6].split()[0]
c = json.loads(open("c_eval.json").readline())
t = json.loads(open("torch.json").readline())
ca, ta = c["accuracy"], t["dev_accuracy"]
ok = ca >= 0.78 and abs(ca - ta) <= 0.01
res = {"bench": "finetune_sst2", "smoke": smoke, "mlm_steps": mlm_steps, "ft_steps": ft_steps,
       "params": c["params"], "c_dev_accuracy": ca, "torch_dev_accuracy": ta, "difference": round(ca - ta, 4),
       "mlm_steps_per_s": round(mlm_steps / mlm_s, 3), "ft_steps_per_s": round(ft_steps / ft_s, 3),
       "torch_steps_per_s": t["steps_per_s"], "host_load": float(load), "pass": ok}
print(json.dumps(res))
print(f"dev accuracy: tb-finetune {ca:.4f}, PyTorch {ta:.4f} (difference {100 * (ca - ta):+.2f} points); "
      f"{'PASS' if ok else 'FAIL'} (needs >= 0.78 and within 1 point)", file=sys.stderr)
sys.exit(0 if ok or smoke else 1)
PYEOF
