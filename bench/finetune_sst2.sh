#!/bin/sh
# finetune_sst2.sh - the SST-2 experiment of tb-finetune, side by side with PyTorch (run outside CI).
#
#   1. a WordPiece vocabulary (tb-vocab) learned on WikiText-2 (validation + test, English);
#   2. masked-LM pre-training of a small BERT from random weights on that corpus (tb-finetune --mlm);
#   3. fine-tuning on GLUE SST-2 train (tb-finetune, dropout off, the starting point saved as step-0);
#   4. the same fine-tuning in PyTorch from that step-0 checkpoint and the same batch file
#      (tests/reference/sst2_compare.py), run at the same time as step 3 (THREADS each), then
#      tb-eval and the PyTorch dev accuracy side by side (both of the final weights).
# Passes when the C dev accuracy is >= 0.78 and the PyTorch one is within 1 point of it.
# Steps whose results are already in WORK are reused (the MLM checkpoint, the fine-tuned model),
# so an interrupted run continues where it stopped; delete WORK to start over.
#
# Usage: bench/finetune_sst2.sh [--smoke]
#   --smoke   a few batches of each step (SMOKE_MLM_BATCHES [4], SMOKE_FT_BATCHES [16]), to check the
#             wiring and measure steps/s
# Environment (defaults in brackets):
#   TB_BIN [build/bin]  SHARED [../shared/data]  WORK [/tmp/tb-sst2]  THREADS [1]
#   VOCAB_SIZE [8000]  LAYERS [4]  HIDDEN [256]  HEADS [4]  FFN [1024]
#   MLM_EPOCHS [4]  MLM_STEPS [1000]  MLM_LR [1e-4]  MLM_SEQ [64]
#   FT_EPOCHS [2]  FT_LR [1e-4]  FT_SEQ [64]  BATCH [32]
# Fine-tuning batches are padded to their longest sequence (--pad-to-longest): SST-2 sentences
# average ~13 tokens, so this is ~4x less work than padding to FT_SEQ and changes no result.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${TB_BIN:-$ROOT/build/bin}
SHARED=${SHARED:-$ROOT/../shared/data}
WORK=${WORK:-/tmp/tb-sst2}
THREADS=${THREADS:-1}
VOCAB_SIZE=${VOCAB_SIZE:-8000}
LAYERS=${LAYERS:-4} HIDDEN=${HIDDEN:-256} HEADS=${HEADS:-4} FFN=${FFN:-1024}
MLM_EPOCHS=${MLM_EPOCHS:-4} MLM_STEPS=${MLM_STEPS:-1000} MLM_LR=${MLM_LR:-1e-4} MLM_SEQ=${MLM_SEQ:-64}
FT_EPOCHS=${FT_EPOCHS:-2} FT_LR=${FT_LR:-1e-4} FT_SEQ=${FT_SEQ:-64} BATCH=${BATCH:-32}
PY=/usr/bin/python3
SMOKE=0
[ "${1:-}" = "--smoke" ] && SMOKE=1
MLM_LIMIT=0 FT_LIMIT=0
if [ $SMOKE = 1 ]; then MLM_EPOCHS=1 MLM_STEPS=0 MLM_LIMIT=${SMOKE_MLM_BATCHES:-4} FT_EPOCHS=1 FT_LIMIT=${SMOKE_FT_BATCHES:-16}; fi

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

# steps, seconds (first start to last step) and last loss of a tb-finetune run, from its metrics.jsonl
run_stats() {
    "$PY" - "$1" <<'PYEOF'
import json, sys
start, last, steps, loss = None, None, 0, float("nan")
for line in open(sys.argv[1]):
    e = json.loads(line)
    if e.get("event") == "start" and start is None:
        start = e["time"]
    elif e.get("event") == "step":
        steps, last, loss = e["step"], e["time"], e.get("loss", loss)
print(steps, max(int(round(last - start)), 1) if start and last else 1, round(loss, 4))
PYEOF
}

log "2. masked-LM pre-training: $MLM_STEPS steps over $MLM_EPOCHS epochs of WikiText-2 (packed, sequence $MLM_SEQ, batch $BATCH)"
if [ "$MLM_STEPS" -gt 0 ] && [ -d "pre/step-$MLM_STEPS" ] && [ -s mlm.tbs ]; then
    log "   reusing pre/step-$MLM_STEPS"
else
    rm -rf pre mlm.tbs
    "$BIN/tb-tokenize" --input corpus.txt --format wikitext --pack --vocab vocab.txt --max-seq-length "$MLM_SEQ" \
        --batch-size "$BATCH" --epochs "$MLM_EPOCHS" --max-batches "$MLM_LIMIT" --output mlm.tbs --progress none --log-level warn
    "$BIN/tb-finetune" --mlm --config model.json --vocab vocab.txt --input mlm.tbs --epochs 1 --max-steps "$MLM_STEPS" \
        --lr "$MLM_LR" --mlm-bias unigram --output pre --save-every 500 --threads "$THREADS" --progress plain --log-level warn
fi
set -- $(run_stats pre/metrics.jsonl)
MLM_STEPS=$1 MLM_SECONDS=$2
log "   $MLM_STEPS MLM steps in $MLM_SECONDS s; last MLM loss $3"

log "3+4. fine-tuning on SST-2 train ($FT_EPOCHS epochs, sequence <= $FT_SEQ, dropout off): tb-finetune and PyTorch side by side"
if [ ! -s train.tbs ] || [ ! -s dev.tbs ]; then
    rm -rf ft train.tbs dev.tbs
    "$BIN/tb-tokenize" --input "$SHARED/glue/SST-2/train.tsv" --format sst-2 --vocab vocab.txt --max-seq-length "$FT_SEQ" \
        --pad-to-longest --batch-size "$BATCH" --epochs "$FT_EPOCHS" --max-batches "$FT_LIMIT" --output train.tbs \
        --progress none --log-level warn
    "$BIN/tb-tokenize" --input "$SHARED/glue/SST-2/dev.tsv" --format sst-2 --vocab vocab.txt --max-seq-length "$FT_SEQ" \
        --pad-to-longest --batch-size 64 --no-shuffle --no-drop-last --output dev.tbs --progress none --log-level warn
fi
if [ ! -s c_eval.json ]; then
    rm -rf ft
    # step-0 (the exact starting point, --save-init) is written before the first update; the PyTorch
    # side starts from it as soon as it appears
    "$BIN/tb-finetune" --init pre --head relu --input train.tbs --dev dev.tbs --epochs 1 --lr "$FT_LR" --no-dropout \
        --save-init --eval-every 500 --output ft --threads "$THREADS" --progress plain --log-level warn &
    c_pid=$!
    while [ ! -f ft/step-0/model.safetensors ]; do
        kill -0 "$c_pid" 2>/dev/null || { wait "$c_pid" || true; echo "finetune_sst2: tb-finetune stopped before step-0" >&2; exit 1; }
        sleep 1
    done
    "$PY" "$ROOT/tests/reference/sst2_compare.py" --init ft/step-0 --train train.tbs --dev dev.tbs --lr "$FT_LR" \
        --threads "$THREADS" --out torch.json > torch.log 2>&1 &
    t_pid=$!
    wait "$c_pid"
    "$BIN/tb-eval" --model ft --input dev.tbs --json c_eval.json --threads "$THREADS" --log-level warn
    wait "$t_pid" || { cat torch.log >&2; exit 1; }
fi
[ -s torch.json ] || "$PY" "$ROOT/tests/reference/sst2_compare.py" --init ft/step-0 --train train.tbs --dev dev.tbs \
    --lr "$FT_LR" --threads "$THREADS" --out torch.json
set -- $(run_stats ft/metrics.jsonl)
FT_STEPS=$1 FT_SECONDS=$2

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
