"""Fit a presence head (lisa.model.presence) onto a trained model, everything else frozen, and
save the model with it:

    python configs/tiny-shapes/fit_presence_head.py --model src/lisa/checkpoints/lisa-tiny \
        --out runs/presence/model --features runs/presence/features.pt

1. The model answers (real generation, as users run it) the train split's present and absent
   queries, a sample of its referring queries and the reasoning queries of a second world (the
   239 scenes of stage 4); every [SEG] of an answer gives one feature row (what the mask path
   computed for it: ``presence_features``), labelled by whether the query's target is in the
   image. ``--features`` caches them.
2. A fifth of the scenes is held out. The head is trained with BCE (Adam, full batch) on the
   rest, keeping the epoch of the lowest held-out loss.
3. Its threshold: the highest log-odds that declines at most ``--present-declined`` of the
   held-out present-labelled rows. Then the whole model is saved with the head in it
   (``presence_head_width`` in lisa_config.json), and the held-out shares printed as JSON.

``--calibrate`` keeps a model's own presence head (one trained with the model: the training
option ``presence_weight``) and only sets its threshold, on the present and absent queries of a
world the model never trained on (``--data-dir``, its train split), then saves the model:

    lisa shapes generate --out data/shapes-calib --split train --seed 20261207 --n 400
    python configs/tiny-shapes/fit_presence_head.py --calibrate --model runs/v13/4-presence-seed0/model \
        --data-dir data/shapes-calib --out runs/v13/4-presence-seed0/calibrated
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lisa import LisaPipeline
from lisa.eval.evaluate import load_eval_dataset
from lisa.model.build import save_bundle
from lisa.model.presence import PresenceHead


def attach_recording_head(pipe: LisaPipeline, width: int) -> list[torch.Tensor]:
    """Put a presence head that declines nothing (threshold -inf) into the model; the list it
    returns receives the head's input features on every call."""
    model = pipe.model
    head = PresenceHead.reading(model.seg_head, model.config.hidden_size, width).to(model.device)
    head.threshold.fill_(float("-inf"))
    model.presence_head = head
    recorded: list[torch.Tensor] = []
    head.register_forward_hook(lambda _module, inputs, _output: recorded.append(inputs[0].detach().float().cpu()))
    return recorded


def collect(pipe: LisaPipeline, recorded: list[torch.Tensor], dataset: str, data_dir: Path, split: str,
            names: list[str] | None, limit: int | None, batch: int, seed: int) -> dict[str, list]:
    """Feature rows of every [SEG] in the model's answers to a dataset's queries, with labels and
    the scene (image) each came from."""
    items = list(load_eval_dataset(dataset, data_dir, split, names=names))
    if limit is not None and len(items) > limit:
        items = random.Random(seed).sample(items, limit)
    rows: dict[str, list] = {"features": [], "label": [], "scene": [], "family": []}
    for start in range(0, len(items), batch):
        chunk = items[start:start + batch]
        recorded.clear()
        results = pipe([str(i.image) for i in chunk], [i.query for i in chunk], max_new_tokens=64, raw=True)
        features = torch.cat(recorded) if recorded else torch.zeros(0)
        counts = [len(r.masks) for r in results]
        if sum(counts) != len(features):
            raise RuntimeError(f"{sum(counts)} masks but {len(features)} recorded feature rows")
        for item, part in zip(chunk, features.split(counts)):
            for row in part:
                rows["features"].append(row)
                rows["label"].append(float(bool(item.target.any())))
                rows["scene"].append(f"{data_dir}:{Path(item.image).name}")
                rows["family"].append(names[0] if names else dataset)
    return rows


def fit(features: torch.Tensor, labels: torch.Tensor, train: torch.Tensor, held: torch.Tensor, width: int,
        epochs: int, seed: int) -> PresenceHead:
    torch.manual_seed(seed)
    head = PresenceHead(features.shape[1], width)
    head.mean.copy_(features[train].mean(0))
    head.std.copy_(features[train].std(0).clamp(min=1e-6))
    optimiser = torch.optim.Adam(head.net.parameters(), lr=3e-3, weight_decay=1e-4)
    loss_fn = nn.BCEWithLogitsLoss()
    best, best_state = float("inf"), None
    for _ in range(epochs):
        head.train()
        optimiser.zero_grad()
        loss_fn(head(features[train]), labels[train]).backward()
        optimiser.step()
        with torch.no_grad():
            held_loss = float(loss_fn(head(features[held]), labels[held]))
        if held_loss < best:
            best, best_state = held_loss, {k: v.clone() for k, v in head.state_dict().items()}
    assert best_state is not None
    head.load_state_dict(best_state)
    return head.eval()


def threshold_for(present_log_odds: torch.Tensor, present_declined: float) -> float:
    """The highest threshold that declines at most ``present_declined`` of these present rows."""
    ordered = present_log_odds.sort().values
    return float(ordered[int(np.floor(present_declined * len(ordered)))])


def calibrate(pipe: LisaPipeline, args: argparse.Namespace) -> dict:
    """Set the model's own head's threshold on ``args.data_dir``'s present and absent queries."""
    head = pipe.model.presence_head
    if head is None:
        raise SystemExit(f"{args.model} has no presence head to calibrate (presence_head_width in lisa_config.json)")
    head.threshold.fill_(float("-inf"))
    recorded: list[torch.Tensor] = []
    head.register_forward_hook(lambda _module, _inputs, output: recorded.append(output.detach().float().cpu()))
    log_odds, labels = [], []
    for name in ("present", "absent"):
        rows = collect(pipe, recorded, "jsonl", args.data_dir, "train", [name], None, args.batch_size, args.seed)
        log_odds += [float(v) for v in rows["features"]]
        labels += rows["label"]
    values, present = torch.tensor(log_odds), torch.tensor(labels) == 1
    if not present.any():
        raise SystemExit(f"the model answered no present query of {args.data_dir} with a [SEG]: nothing to calibrate on")
    head.threshold.fill_(threshold_for(values[present], args.present_declined))
    declined = values < head.threshold
    # The head's trade-off on this world: absent rows declined where 1, 2, 5 and 10 % of present ones are.
    trade_off = {f"absent_declined_at_{share:g}_present": round(float(
        (values[~present] < threshold_for(values[present], share)).float().mean()), 3) for share in (0.01, 0.02, 0.05, 0.1)}
    return {"rows": len(values), "threshold": round(float(head.threshold), 4),
            "present_declined": round(float(declined[present].float().mean()), 3),
            "absent_declined": round(float(declined[~present].float().mean()), 3), **trade_off}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--features", type=Path, help="cache of the feature rows (written once, then read)")
    parser.add_argument("--data-dir", type=Path, default=Path("data/shapes"))
    parser.add_argument("--reasoning-dir", type=Path, default=Path("data/shapes-reason239"))
    parser.add_argument("--referring", type=int, default=2000, help="referring queries sampled from train")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=600)
    parser.add_argument("--present-declined", type=float, default=0.025)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--calibrate", action="store_true",
                        help="keep the model's own presence head; only set its threshold on --data-dir")
    args = parser.parse_args()
    pipe = LisaPipeline.from_pretrained(args.model, device="cpu", dtype="float32")
    if args.calibrate:
        report = calibrate(pipe, args)
        if args.out.exists():
            shutil.rmtree(args.out)
        save_bundle(args.out, pipe.model, pipe.tokenizer, pipe.image_processor)
        print(json.dumps(report))
        return
    parts: dict[str, dict[str, list]] = {}  # per query set, cached one by one (a rerun resumes)
    if args.features is not None and args.features.is_file():
        parts = torch.load(args.features)
    sources = {"present": ("jsonl", args.data_dir, ["present"], None), "absent": ("jsonl", args.data_dir, ["absent"], None),
               "referring": ("jsonl", args.data_dir, ["referring"], args.referring),
               "reasoning": ("reasonseg", args.reasoning_dir, None, None)}
    if any(name not in parts for name in sources):
        recorded = attach_recording_head(pipe, args.width)
        for name, (dataset, data_dir, names, limit) in sources.items():
            if name in parts:
                continue
            parts[name] = collect(pipe, recorded, dataset, data_dir, "train", names, limit, args.batch_size, args.seed)
            print(f"{name}: {len(parts[name]['label'])} [SEG]s, {int(sum(parts[name]['label']))} present", flush=True)
            if args.features is not None:
                args.features.parent.mkdir(parents=True, exist_ok=True)
                torch.save(parts, args.features)
        pipe.model.presence_head = None
    rows = {key: [value for part in parts.values() for value in part[key]] for key in ("features", "label", "scene", "family")}
    features = torch.stack(rows["features"])
    labels = torch.tensor(rows["label"])
    scenes = sorted(set(rows["scene"]))
    held_scenes = set(random.Random(args.seed).sample(scenes, len(scenes) // 5))
    held = torch.tensor([s in held_scenes for s in rows["scene"]])
    head = fit(features, labels, ~held, held, args.width, args.epochs, args.seed)
    with torch.no_grad():
        log_odds = head(features)
    head.threshold.fill_(threshold_for(log_odds[held & (labels == 1)], args.present_declined))
    declined = log_odds < head.threshold
    families = sorted(set(rows["family"]))
    family = np.array(rows["family"])
    report = {"rows": len(labels), "held_out_rows": int(held.sum()), "threshold": round(float(head.threshold), 4)}
    for name in families:
        chosen = torch.from_numpy(family == name) & held
        for label, side in [(1, "present"), (0, "absent")]:
            picked = chosen & (labels == label)
            if picked.any():
                report[f"held_out_{name}_{side}_declined"] = round(float(declined[picked].float().mean()), 3)
    model = pipe.model
    model.presence_head = head.to(model.device, model.dtype)
    model.config = replace(model.config, presence_head_width=args.width)
    if args.out.exists():
        shutil.rmtree(args.out)
    save_bundle(args.out, model, pipe.tokenizer, pipe.image_processor)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
