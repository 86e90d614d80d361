#!/usr/bin/env python3
"""PyTorch reference for `jigsaw-lab bench`: training-step throughput of the same models,
shapes and step (forward, backward, AdamW update; full fine-tuning), measured the same way.

    python bench/torch_reference.py --models minilm --shapes 64x32 --warmup 2 --windows 3 \
        --steps-per-window 2

Models are transformers' *ForSequenceClassification built from their config with random
weights (nothing is downloaded): minilm = BERT with 6 layers, hidden 384, 12 heads, ffn 1536;
bert-base = 12 layers, hidden 768, 12 heads, ffn 3072, vocabulary 30522; electra-base = the
same encoder with ELECTRA's head; deberta-v3-base = the same sizes with DeBERTa-v3's
disentangled attention (256 buckets) and its 128,100-token vocabulary; 2 labels, dropout
0.1. AdamW lr 2e-5, weight decay 0.01 on every parameter, eps 1e-8. Inputs are full-length
random token ids (no padding, an all-ones attention mask as burn gets), random labels, fixed
seed, the same batch at every step.

Each configuration: `--warmup` untimed steps, then `--windows` timed windows of
`--steps-per-window` steps, the device synchronised at both ends of each window; the medians
over the windows are reported. dtypes (`--dtypes`): fp32; tf32 (fp32 with TF32 tensor-core
matrix products allowed, CUDA only); bf16 autocast (fp32 weights and optimizer) where the
device supports it (CUDA with bf16, and the CPU); f16 autocast with a GradScaler, PyTorch's
f16 recipe (CUDA only). These are the counterparts of `jigsaw-lab bench --precisions`.

Prints a table on stderr and one JSON record per configuration on stdout, in the shape of
`jigsaw-lab bench`: card, date, model, impl ("torch"), dtype, batch, seq, examples_per_s,
step_ms_median, peak_mem_mb (CUDA: torch.cuda.max_memory_reserved, the counterpart of burn's
reserved bytes; null on the CPU), device, phases (forward_backward_ms, optimizer_ms and
dispatch_ms: medians of one more window that waits for the device after each phase; dispatch
is the host time to issue a step), warmup_steps, warmup_s, windows, steps_per_window, attn. torch uses its default thread count (all cores).
"""

import argparse
import datetime
import json
import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from transformers import (  # noqa: E402
    BertConfig,
    BertForSequenceClassification,
    DebertaV2Config,
    DebertaV2ForSequenceClassification,
    ElectraConfig,
    ElectraForSequenceClassification,
)

BERT_BASE = dict(num_hidden_layers=12, hidden_size=768, num_attention_heads=12, intermediate_size=3072)
COMMON = dict(max_position_embeddings=512, num_labels=2, hidden_dropout_prob=0.1,
              attention_probs_dropout_prob=0.1)
# name -> (config class, model class, config arguments), as `jigsaw-lab bench` builds them.
MODELS = {
    "minilm-l6": (BertConfig, BertForSequenceClassification,
                  dict(vocab_size=30522, type_vocab_size=2, num_hidden_layers=6, hidden_size=384,
                       num_attention_heads=12, intermediate_size=1536)),
    "bert-base": (BertConfig, BertForSequenceClassification,
                  dict(vocab_size=30522, type_vocab_size=2, **BERT_BASE)),
    # google/electra-base-discriminator's sizes.
    "electra-base": (ElectraConfig, ElectraForSequenceClassification,
                     dict(vocab_size=30522, type_vocab_size=2, embedding_size=768, **BERT_BASE)),
    # microsoft/deberta-v3-base's sizes and attention.
    "deberta-v3-base": (DebertaV2Config, DebertaV2ForSequenceClassification,
                        dict(vocab_size=128100, type_vocab_size=0, layer_norm_eps=1e-7,
                             relative_attention=True, position_buckets=256,
                             norm_rel_ebd="layer_norm", share_att_key=True,
                             pos_att_type=["p2c", "c2p"], max_relative_positions=-1,
                             position_biased_input=False, pooler_hidden_size=768,
                             pooler_dropout=0, pooler_hidden_act="gelu", **BERT_BASE)),
}
ALIASES = {"minilm": "minilm-l6", "minilm-l6": "minilm-l6", "bert-base": "bert-base", "bert": "bert-base",
           "electra-base": "electra-base", "electra": "electra-base",
           "deberta-v3-base": "deberta-v3-base", "deberta-v3": "deberta-v3-base",
           "deberta": "deberta-v3-base"}
LEARNING_RATE = 2e-5
WEIGHT_DECAY = 0.01


def shape(text):
    seq, sep, batch = text.lower().partition("x")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r} is not a shape; write SEQxBATCH, such as 128x32")
    return int(seq), int(batch)


def model_name(text):
    try:
        return ALIASES[text.strip().lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a benchmark model; use minilm, bert-base, electra-base or deberta-v3-base")


def comma_list(kind):
    return lambda text: [kind(item) for item in text.split(",") if item.strip()]


def cpu_model_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(name, seq, batch, dtype, device, args):
    torch.manual_seed(args.seed)
    config_class, model_class, sizes = MODELS[name]
    config = config_class(**COMMON, **sizes)
    config._attn_implementation = args.attn
    try:
        model = model_class(config).to(device)
    except ValueError:
        # DeBERTa has no sdpa path in transformers: it runs eager attention, as it must.
        if args.attn == "eager":
            raise
        config._attn_implementation = "eager"
        model = model_class(config).to(device)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY, eps=1e-8)
    generator = torch.Generator().manual_seed(args.seed)
    ids = torch.randint(1000, config.vocab_size, (batch, seq), generator=generator).to(device)
    labels = torch.randint(0, 2, (batch,), generator=generator).to(device)
    mask = torch.ones(batch, seq, dtype=torch.long, device=device)
    type_ids = torch.zeros(batch, seq, dtype=torch.long, device=device)
    autocast = {"bf16": torch.bfloat16, "f16": torch.float16}.get(dtype)
    # TF32 only for this configuration's matrix products (PyTorch's default is off).
    torch.backends.cuda.matmul.allow_tf32 = dtype == "tf32"
    torch.backends.cudnn.allow_tf32 = dtype == "tf32"
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == "f16")

    def forward_backward():
        with torch.autocast(device_type=device.type, dtype=autocast or torch.float32,
                            enabled=autocast is not None):
            loss = model(input_ids=ids, attention_mask=mask, token_type_ids=type_ids, labels=labels).loss
        scaler.scale(loss).backward()

    def update():
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)

    def step():
        forward_backward()
        update()

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    for _ in range(args.warmup):
        step()
    sync(device)
    warmup_s = time.perf_counter() - started

    step_ms, examples_per_s = [], []
    for _ in range(args.windows):
        sync(device)
        window = time.perf_counter()
        for _ in range(args.steps_per_window):
            step()
        sync(device)
        seconds = time.perf_counter() - window
        step_ms.append(seconds * 1e3 / args.steps_per_window)
        examples_per_s.append(batch * args.steps_per_window / seconds)

    # One more window, waiting for the device after each phase, as `jigsaw-lab bench` does.
    forward_backward_ms, optimizer_ms, dispatch_ms = [], [], []
    for _ in range(args.steps_per_window):
        sync(device)
        started = time.perf_counter()
        forward_backward()
        issued = time.perf_counter() - started
        sync(device)
        forward_backward_ms.append((time.perf_counter() - started) * 1e3)
        update_started = time.perf_counter()
        update()
        issued += time.perf_counter() - update_started
        sync(device)
        optimizer_ms.append((time.perf_counter() - update_started) * 1e3)
        dispatch_ms.append(issued * 1e3)

    peak = torch.cuda.max_memory_reserved(device) / 2**20 if device.type == "cuda" else None
    if device.type == "cuda":
        card = torch.cuda.get_device_name(device)
        described = f"GPU: {card} (torch {torch.__version__}, CUDA {torch.version.cuda})"
    else:
        card = cpu_model_name()
        described = f"CPU: {torch.get_num_threads()} threads (torch {torch.__version__})"
    del model, optimizer
    return {
        "card": card,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
        "model": name,
        "impl": "torch",
        "dtype": dtype,
        "batch": batch,
        "seq": seq,
        "examples_per_s": statistics.median(examples_per_s),
        "step_ms_median": statistics.median(step_ms),
        "peak_mem_mb": peak,
        "device": described,
        "phases": {
            "forward_backward_ms": statistics.median(forward_backward_ms),
            "optimizer_ms": statistics.median(optimizer_ms),
            "dispatch_ms": statistics.median(dispatch_ms),
        },
        "warmup_steps": args.warmup,
        "warmup_s": warmup_s,
        "windows": args.windows,
        "steps_per_window": args.steps_per_window,
        "attn": config._attn_implementation,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=comma_list(model_name), default=["minilm-l6", "bert-base"])
    parser.add_argument("--shapes", type=comma_list(shape), default=[(128, 32), (64, 64)], help="SEQxBATCH,...")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--steps-per-window", type=int, default=10)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--dtypes", type=comma_list(str), default=["fp32", "tf32", "bf16", "f16"],
                        help="fp32, tf32, bf16 and/or f16 (each is skipped where unsupported: "
                             "tf32 and f16 need CUDA)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--attn", choices=["sdpa", "eager"], default="sdpa",
                        help="transformers' attention implementation (default sdpa, its default)")
    args = parser.parse_args()
    if args.windows < 1 or args.steps_per_window < 1 or args.warmup < 0:
        parser.error("windows and steps per window must be at least 1, warmup at least 0")
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    elif args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device")
    else:
        device = torch.device(args.device)

    dtypes = []
    for dtype in args.dtypes:
        if dtype == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            print("torch_reference: bf16 is not supported on this GPU; skipped", file=sys.stderr)
        elif dtype in ("tf32", "f16") and device.type != "cuda":
            print(f"torch_reference: {dtype} is measured on CUDA only; skipped", file=sys.stderr)
        elif dtype in ("fp32", "tf32", "bf16", "f16"):
            dtypes.append(dtype)
        else:
            parser.error(f"unknown dtype {dtype!r}; use fp32, tf32, bf16 or f16")

    print(f"torch_reference on {device} (torch {torch.__version__}, {torch.get_num_threads()} threads): "
          f"{args.warmup} warm-up steps, {args.windows} windows of {args.steps_per_window} steps",
          file=sys.stderr)
    records, failed = [], False
    for name in args.models:
        for seq, batch in args.shapes:
            for dtype in dtypes:
                try:
                    record = measure(name, seq, batch, dtype, device, args)
                except RuntimeError as error:  # e.g. CUDA out of memory: report and go on
                    failed = True
                    print(f"  {name} {seq}x{batch} {dtype}: failed: {error}", file=sys.stderr)
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                    continue
                records.append(record)
                print(json.dumps(record), flush=True)
                print(f"  {name} {seq}x{batch} {dtype}: {record['step_ms_median']:.1f} ms/step, "
                      f"{record['examples_per_s']:.1f} examples/s", file=sys.stderr)

    print(f"\n{'model':<10} {'impl':<9} {'dtype':<5} {'seq':>4} {'batch':>5} {'step ms':>10} "
          f"{'examples/s':>11} {'peak MiB':>9}  card", file=sys.stderr)
    for r in records:
        peak = "n/a" if r["peak_mem_mb"] is None else f"{r['peak_mem_mb']:.0f}"
        print(f"{r['model']:<10} {r['impl']:<9} {r['dtype']:<5} {r['seq']:>4} {r['batch']:>5} "
              f"{r['step_ms_median']:>10.1f} {r['examples_per_s']:>11.1f} {peak:>9}  {r['card']}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
