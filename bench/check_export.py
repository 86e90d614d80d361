#!/usr/bin/env python3
"""Load a checkpoint exported by Jigsaw Lab's trainer with HF transformers and print its logits.

This is the other half of the export round trip: the Rust trainer writes an HF-layout folder
(config.json, model.safetensors, tokenizer.json, ...); if transformers loads it without
missing/unexpected weights and gives the logits the Rust side computed, the export is right.

Usage (repository root, after bench/setup_python.sh):

  V=/var/cache/jigsaw-lab/venv/bin/python
  $V bench/check_export.py EXPORT_DIR SENTENCES.txt              # logits as JSON on stdout
  $V bench/check_export.py EXPORT_DIR SENTENCES.txt --batch      # one padded batch
  $V bench/check_export.py EXPORT_DIR SENTENCES.txt --tokenizer raw
  $V bench/check_export.py EXPORT_DIR SENTENCES.txt --expect rust_logits.json --atol 1e-4

SENTENCES.txt has one sentence per line (blank lines are skipped); "-" reads stdin.

Output (stdout, JSON):
  {"model_dir", "model_type", "architecture", "id2label", "tokenizer": "auto"|"raw",
   "results": [{"text", "input_ids", "logits": [..], "probs": [..], "label"}]}

--expect FILE compares the logits with FILE, which is either a JSON list of logit rows
([[l0, l1], ...], one per sentence) or an object with "results": [{"logits": [...]}, ...]
(this script's own output format); exits 1 if any |difference| > --atol (after printing).

Exit status: 0 ok, 1 logits differ from --expect, 2 the checkpoint does not load cleanly
(missing or unexpected weights, unless --allow-missing).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import torch  # noqa: E402
import transformers  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402
from transformers import AutoConfig, AutoModelForSequenceClassification  # noqa: E402

transformers.utils.logging.disable_progress_bar()


def read_sentences(path: str) -> list[str]:
    text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def max_len(config) -> int:
    n = getattr(config, "max_position_embeddings", 512)
    if config.model_type in ("roberta", "xlm-roberta", "camembert"):
        n -= (config.pad_token_id or 1) + 1  # positions start at padding_idx + 1
    return n


class RawTokenizer:
    """tokenizer.json through the `tokenizers` library, as the Rust side uses it."""

    def __init__(self, model_dir: Path, config):
        self.tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tok.no_padding()
        self.tok.no_truncation()
        self.pad_id = config.pad_token_id if config.pad_token_id is not None else 0
        self.max_len = max_len(config)

    def __call__(self, texts: list[str]) -> dict[str, torch.Tensor]:
        encs = [self.tok.encode(t) for t in texts]
        for t, e in zip(texts, encs):
            if len(e.ids) > self.max_len:
                raise SystemExit(f"check_export: {len(e.ids)} tokens > {self.max_len}: {t!r}")
        n = max(len(e.ids) for e in encs)

        def pad(rows, v):
            return torch.tensor([r + [v] * (n - len(r)) for r in rows], dtype=torch.long)

        return {
            "input_ids": pad([e.ids for e in encs], self.pad_id),
            "attention_mask": pad([e.attention_mask for e in encs], 0),
            "token_type_ids": pad([e.type_ids for e in encs], 0),
        }


class AutoTok:
    def __init__(self, model_dir: Path, config):
        from transformers import AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(str(model_dir))
        self.max_len = max_len(config)

    def __call__(self, texts: list[str]) -> dict[str, torch.Tensor]:
        enc = self.tok(
            texts,
            padding=True,
            truncation=False,
            return_tensors="pt",
            return_token_type_ids=True,
        )
        if enc["input_ids"].shape[1] > self.max_len:
            raise SystemExit(f"check_export: a sentence has more than {self.max_len} tokens")
        return dict(enc)


def load_model(model_dir: Path, allow_missing: bool):
    model, info = AutoModelForSequenceClassification.from_pretrained(
        str(model_dir),
        attn_implementation="eager",
        dtype=torch.float32,
        output_loading_info=True,
    )
    problems = {
        k: sorted(v)
        for k, v in info.items()
        if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v
    }
    if problems:
        print(f"check_export: loading {model_dir}: {json.dumps(problems)}", file=sys.stderr)
        if not allow_missing:
            sys.exit(2)
    model.eval()
    return model


def run(model, tok, texts: list[str], batch: bool) -> list[dict]:
    accepted = set(inspect.signature(model.forward).parameters)
    groups = [texts] if batch else [[t] for t in texts]
    results = []
    with torch.no_grad():
        for group in groups:
            enc = tok(group)
            kwargs = {k: v for k, v in enc.items() if k in accepted}
            logits = model(**kwargs).logits
            probs = torch.softmax(logits, -1)
            for i, text in enumerate(group):
                n = int(enc["attention_mask"][i].sum())
                label_id = int(logits[i].argmax())
                results.append(
                    {
                        "text": text,
                        "input_ids": enc["input_ids"][i, :n].tolist(),
                        "logits": [float(x) for x in logits[i]],
                        "probs": [float(x) for x in probs[i]],
                        "label": model.config.id2label.get(label_id, str(label_id)),
                    }
                )
    return results


def compare(results: list[dict], expect_path: Path, atol: float) -> bool:
    data = json.loads(expect_path.read_text())
    rows = [r["logits"] for r in data["results"]] if isinstance(data, dict) else data
    if len(rows) != len(results):
        print(f"check_export: {len(rows)} expected rows, {len(results)} sentences", file=sys.stderr)
        return False
    worst = 0.0
    ok = True
    for i, (want, got) in enumerate(zip(rows, results)):
        if len(want) != len(got["logits"]):
            print(f"check_export: sentence {i}: {len(want)} expected logits", file=sys.stderr)
            ok = False
            continue
        d = max(abs(a - b) for a, b in zip(want, got["logits"]))
        worst = max(worst, d)
        if d > atol:
            ok = False
            print(
                f"check_export: sentence {i} differs by {d:.3g}: "
                f"expected {want}, transformers {got['logits']}",
                file=sys.stderr,
            )
    print(f"check_export: max |logit difference| {worst:.3g} (atol {atol})", file=sys.stderr)
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(
        description="Print HF transformers logits for a checkpoint exported by the trainer.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("Usage", 1)[1].split("\n\n", 1)[1] if "Usage" in __doc__ else None,
    )
    ap.add_argument("model_dir", type=Path, help="HF-layout folder (config.json, model.safetensors, tokenizer.json)")
    ap.add_argument("sentences", help="text file, one sentence per line ('-' for stdin)")
    ap.add_argument(
        "--tokenizer",
        choices=("auto", "raw"),
        default="auto",
        help="auto: AutoTokenizer when tokenizer_config.json exists, else raw; "
        "raw: tokenizers.Tokenizer on tokenizer.json (padding/truncation off)",
    )
    ap.add_argument("--batch", action="store_true", help="all sentences as one padded batch")
    ap.add_argument("--expect", type=Path, help="logits to compare with (see above)")
    ap.add_argument("--atol", type=float, default=1e-4)
    ap.add_argument("--allow-missing", action="store_true", help="don't fail on missing/unexpected weights")
    args = ap.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))

    texts = read_sentences(args.sentences)
    if not texts:
        print("check_export: no sentences", file=sys.stderr)
        return 2

    config = AutoConfig.from_pretrained(str(args.model_dir))
    kind = args.tokenizer
    if kind == "auto" and not (args.model_dir / "tokenizer_config.json").exists():
        kind = "raw"
    tok = AutoTok(args.model_dir, config) if kind == "auto" else RawTokenizer(args.model_dir, config)
    model = load_model(args.model_dir, args.allow_missing)

    results = run(model, tok, texts, args.batch)
    out = {
        "model_dir": str(args.model_dir),
        "model_type": config.model_type,
        "architecture": type(model).__name__,
        "id2label": {str(k): v for k, v in model.config.id2label.items()},
        "tokenizer": kind,
        "results": results,
    }
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")

    if args.expect is not None and not compare(results, args.expect, args.atol):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
