"""Mutation check of the mask path: put one realistic one-line bug in at a time, run the fast
tests that should notice it, restore the file, and report the kill rate.

    OMP_NUM_THREADS=1 PYTHONPATH=src python tests/mutation/run_mutants.py [--only NAME ...] [--list]

Not collected by pytest (the file name does not start with test_). It edits files under src/
in place and restores each one in a ``finally``; run it on a clean tree (or a copy: --root).
A mutant is *killed* when the tests fail (or time out); it *survives* when they pass.
Each mutant runs its own test list (``Mutant.tests``, else the shared TESTS); killed mutants
stop at the first failing test (-x). All 51: ~8.5 min (2 busy cores, Dec 2026). Every
mutant's ``old`` must still occur exactly once, or the run stops (exit 2) naming the stale ones.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str  # under src/lisa/
    old: str  # must occur exactly once in the file
    new: str
    tests: tuple[str, ...] = ()  # pytest files / node ids to run; () = the shared TESTS


# Fast tests that exercise the mask path, cheapest first (-x stops at the first failure).
TESTS = [
    "tests/test_mask_geometry.py", "tests/test_eval_metrics.py", "tests/test_model_seg_head.py",
    "tests/test_golden.py", "tests/test_pipeline.py", "tests/test_model_losses.py",
    "tests/test_model_prompting.py", "tests/test_interop_official.py", "tests/test_shipped_model.py",
    "tests/test_eval_model.py", "tests/test_train_step.py",
]
# Fast tests of the new seams (node ids; one parametrisation each keeps them to seconds).
_SAM2 = tuple(f"tests/test_mask_backbones.py::{name}[sam2]" for name in (
    "test_embedding_is_transformers_own", "test_decode_is_the_decoders_mask_token_zero",
    "test_decoder_keeps_mask_token_zero", "test_upscale_is_one_bilinear_step_without_corner_alignment",
    "test_upscale_maps_low_res_to_any_aspect_ratio", "test_batched_equals_single",
    "test_generation_with_forced_seg_gives_masks_at_the_original_size"))
_QWEN = tuple(f"tests/test_vlm_adapters.py::{name}" for name in (
    "test_image_tokens_follow_each_image", "test_positions_match_transformers_forward",
    "test_generated_seg_states_equal_teacher_forced", "test_batched_equals_single"))
# Batched = single with two different images per batch: Llava + SAM 2, then both Qwen families.
_MULTI_IMAGE = ("tests/test_mask_backbones.py::test_batched_equals_single[sam2]",
                "tests/test_vlm_adapters.py::test_batched_equals_single")

MUTANTS = [
    # ---- SAM stage (model/sam.py) -------------------------------------------------------
    Mutant("sam_multimask", "model/sam.py", "multimask_output=False,", "multimask_output=True,"),
    Mutant("crop_dropped", "model/sam.py", "masks = masks[..., : resized_size[0], : resized_size[1]]", "masks = masks"),
    Mutant("crop_wrong_side", "model/sam.py", "masks = masks[..., : resized_size[0], : resized_size[1]]",
           "masks = masks[..., input_size - resized_size[0]:, input_size - resized_size[1]:]"),
    Mutant("crop_axes_swapped", "model/sam.py", "masks = masks[..., : resized_size[0], : resized_size[1]]",
           "masks = masks[..., : resized_size[1], : resized_size[0]]"),
    Mutant("align_corners_true", "model/sam.py",
           'masks = F.interpolate(masks, (input_size, input_size), mode="bilinear", align_corners=False)',
           'masks = F.interpolate(masks, (input_size, input_size), mode="bilinear", align_corners=True)'),
    Mutant("dense_prompt_zeroed", "model/sam.py", "dense = sam.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)",
           "dense = sam.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1) * 0"),
    Mutant("positional_dropped", "model/sam.py",
           "positional = sam.get_image_wide_positional_embeddings().expand(count, -1, -1, -1)",
           "positional = sam.get_image_wide_positional_embeddings().expand(count, -1, -1, -1) * 0"),
    Mutant("score_over_whole_image", "model/sam.py", "(probs * binary).flatten(1).sum(-1) / area.clamp(min=1)",
           "(probs * binary).flatten(1).sum(-1) / binary[0].numel()"),
    Mutant("score_is_mean_probability", "model/sam.py", "score = torch.where(area > 0,",
           "score = probs.flatten(1).mean(-1) if True else torch.where(area > 0,"),
    # ---- SAM view (data/transforms.py) --------------------------------------------------
    Mutant("sam_pad_top_left", "data/transforms.py", "padded[:, :new_h, :new_w] = normalised",
           "padded[:, target - new_h:, target - new_w:] = normalised"),
    Mutant("sam_size_truncates", "data/transforms.py",
           "return max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5))",
           "return max(1, int(height * scale)), max(1, int(width * scale))"),
    Mutant("sam_pad_not_mean", "data/transforms.py", "padded = torch.zeros(3, target, target)",
           "padded = torch.full((3, target, target), -2.0)"),
    Mutant("sam_bgr", "data/transforms.py", "normalised = (pixels - _SAM_MEAN) / _SAM_STD",
           "normalised = (pixels.flip(0) - _SAM_MEAN) / _SAM_STD"),
    Mutant("sam_nearest", "data/transforms.py", "Image.BILINEAR", "Image.NEAREST"),
    # ---- seg head (model/seg_head.py) ---------------------------------------------------
    Mutant("seg_head_no_activation", "model/seg_head.py", "return self.fc2(self.act(self.fc1(hidden)))",
           "return self.fc2(self.fc1(hidden))"),
    Mutant("seg_head_batch_stats_at_inference", "model/seg_head.py",
           "batch_stats = self.training and hidden.shape[0] > 1", "batch_stats = hidden.shape[0] > 1"),
    # ---- generation (model/vlm.py) ------------------------------------------------------
    Mutant("banned_not_banned", "model/vlm.py", 'bias[[i for i in banned_ids if 0 <= i < vocab]] = float("-inf")', "pass"),
    Mutant("positions_from_one", "model/vlms/base.py", "return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)",
           "return attention_mask.long().cumsum(-1)"),
    Mutant("next_position_repeated", "model/vlm.py", "next_position = next_position + 1",
           "next_position = next_position"),
    Mutant("new_token_masked_out", "model/vlm.py", "attention_mask.new_ones(rows, max_new_tokens)",
           "attention_mask.new_zeros(rows, max_new_tokens)"),
    Mutant("seg_state_after_token", "model/vlm.py", "states.append(hidden)", "states.append(embed(next_ids))"),
    Mutant("image_features_not_per_row", "model/vlm.py", "rows = [features[int(i)] for i, n in",
           "rows = [features[0] for i, n in", _MULTI_IMAGE + tuple(TESTS)),
    # ---- VLM adapters (model/vlms/) -------------------------------------------------------
    # A misnamed override: the base class's 1-D positions are used silently.
    Mutant("qwen_positions_fall_back_to_1d", "model/vlms/qwen2_5_vl.py", "    def position_ids(",
           "    def rope_position_ids(", _QWEN),
    # Qwen3-VL's DeepStack levels of image 0 packed with every image.
    Mutant("deepstack_not_per_image", "model/vlms/qwen3_vl.py", "*(level[i] for level in levels)",
           "*(level[0] for level in levels)", _QWEN),
    # ---- SAM 2 / SAM 3 tracker (model/mask_backbones/sam2.py) ---------------------------------
    Mutant("sam2_multimask", "model/mask_backbones/sam2.py", "multimask_output=False,", "multimask_output=True,", _SAM2),
    Mutant("sam2_stability_fallback_on", "model/mask_backbones/sam2.py",
           "model.mask_decoder.dynamic_multimask_via_stability = False", "pass", _SAM2),
    Mutant("sam2_dense_prompt_zeroed", "model/mask_backbones/sam2.py",
           "dense = sam.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)",
           "dense = sam.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1) * 0", _SAM2),
    Mutant("sam2_high_res_dropped", "model/mask_backbones/sam2.py", "high_resolution_features=list(chosen.high_res),",
           "high_resolution_features=[torch.zeros_like(f) for f in chosen.high_res],", _SAM2),
    Mutant("sam2_high_res_swapped", "model/mask_backbones/sam2.py", "return ImageEmbedding(levels[-1], (high_0, high_1))",
           "return ImageEmbedding(levels[-1], (high_1, high_0))", _SAM2),
    Mutant("sam2_no_memory_on_finest_level", "model/mask_backbones/sam2.py",
           "levels[-1] = levels[-1] + sam.no_memory_embedding", "levels[0] = levels[0] + sam.no_memory_embedding", _SAM2),
    Mutant("sam2_upscale_align_corners", "model/mask_backbones/sam2.py",
           "original_size, mode=\"bilinear\", align_corners=False)", "original_size, mode=\"bilinear\", align_corners=True)", _SAM2),
    Mutant("sam2_upscale_via_input_size", "model/mask_backbones/sam2.py",
           "masks = F.interpolate(low_res[:, None].float(), original_size,",
           "masks = F.interpolate(F.interpolate(low_res[:, None].float(), (self.image_size,) * 2, mode=\"bilinear\"), original_size,",
           _SAM2),
    Mutant("sam2_upscale_to_resized_size", "model/mask_backbones/sam2.py",
           "masks = F.interpolate(low_res[:, None].float(), original_size,",
           "masks = F.interpolate(low_res[:, None].float(), resized_size,", _SAM2),
    # ---- composite model (model/lisa.py) ------------------------------------------------
    Mutant("seg_gather_off_by_one", "model/lisa.py", "is_seg = input_ids[:, 1:] == self.config.seg_token_id",
           "is_seg = input_ids[:, :-1] == self.config.seg_token_id"),
    Mutant("rope_half_precision", "model/lisa.py", "return keep_rope_float32(model.to(device=device, dtype=dtype)).eval()",
           "return model.to(device=device, dtype=dtype).eval()"),
    # With Llava's 1-D RoPE this only shifts each left-padded row's positions by its pad count,
    # which relative attention ignores (up to rounding); with Qwen's 3-D positions the image
    # tokens get text positions, so the Qwen tests are the ones that notice.
    Mutant("forced_left_pad_positions", "model/lisa.py",
           "hidden = vlm_ops.language_hidden(self.vlm, embeds, attention_mask, position_ids,",
           "hidden = vlm_ops.language_hidden(self.vlm, embeds, attention_mask, None,", _QWEN + tuple(TESTS)),
    Mutant("masks_of_first_image_only", "model/lisa.py", "chosen = seg_image == image", "chosen = seg_image == 0"),
    Mutant("every_mask_to_every_row", "model/lisa.py", "logits.append(per_image[image][row_of_mask[image_of_mask == image] == row])",
           "logits.append(per_image[image])"),
    Mutant("ignore_is_target_in_training", "model/lisa.py", "(m == 1).float()", "(m > 0).float()"),
    Mutant("loss_weights_swapped", "model/lisa.py",
           "loss = cfg.ce_weight * ce + cfg.bce_weight * bce + cfg.dice_weight * dice",
           "loss = cfg.ce_weight * ce + cfg.dice_weight * bce + cfg.bce_weight * dice"),
    # ---- pipeline (inference/pipeline.py) -----------------------------------------------
    Mutant("prompts_right_padded", "inference/pipeline.py", "input_ids[row, length - len(tokens):] = torch.tensor(tokens)",
           "input_ids[row, :len(tokens)] = torch.tensor(tokens)"),
    Mutant("cache_key_ignores_shape", "inference/pipeline.py", "digest.update(str(array.shape).encode())", "pass"),
    Mutant("cache_evicts_current_batch", "inference/pipeline.py", "while len(self._cache) > max(self.cache_size, len(keys)):",
           "while len(self._cache) > self.cache_size:"),
    # The per-image cache entries of a multi-image encode shifted by one.
    Mutant("cache_features_shifted", "inference/pipeline.py", "encoded.features[i], encoded.sam_embeddings[i],",
           "encoded.features[i - 1], encoded.sam_embeddings[i],", _MULTI_IMAGE + tuple(TESTS)),
    Mutant("threshold_at_half", "inference/pipeline.py", "masks = [(logits > 0).cpu().numpy()", "masks = [(logits > 0.5).cpu().numpy()"),
    # ---- metrics (eval/metrics.py) ------------------------------------------------------
    Mutant("ignore_not_removed", "eval/metrics.py", "pred_fg = (pred != 0) & valid", "pred_fg = pred != 0"),
    Mutant("union_double_counts", "eval/metrics.py",
           "union = int(np.count_nonzero(pred_fg)) + int(np.count_nonzero(target_fg)) - intersection",
           "union = int(np.count_nonzero(pred_fg)) + int(np.count_nonzero(target_fg))"),
    Mutant("empty_on_empty_zero", "eval/metrics.py", "            return 1.0", "            return 0.0"),
    Mutant("giou_wrong_denominator", "eval/metrics.py", "return float(self.iou_sum) / (self.n + IOU_EPS)",
           "return float(self.iou_sum) / (self.n + 1)"),
    Mutant("intersection_sums_union", "eval/metrics.py", "self.intersection += score.intersection",
           "self.intersection += score.union"),
    Mutant("merge_mixes_sums", "eval/metrics.py", "self.union + other.union,", "self.union + other.intersection,"),
]


def run_tests(root: Path, tests: tuple[str, ...], timeout: int) -> tuple[str, float]:
    env = dict(os.environ, PYTHONPATH=str(root / "src"), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    start = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
                              cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
        verdict = "survived" if done.returncode == 0 else "killed"
    except subprocess.TimeoutExpired:
        verdict = "killed (timeout)"
    return verdict, time.perf_counter() - start


def _matches(root: Path, mutant: Mutant) -> int:
    """How often the mutant's ``old`` occurs in its file (0 when the file is gone)."""
    path = root / "src/lisa" / mutant.path
    return path.read_text().count(mutant.old) if path.is_file() else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2])
    parser.add_argument("--only", nargs="*", help="mutant names to run (default: all)")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per mutant")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # so that a killed run still restores the file
    unknown = sorted(set(args.only or ()) - {m.name for m in MUTANTS})
    if unknown:
        print(f"unknown mutant names: {', '.join(unknown)}")
        return 2
    # Every mutant (not only the selected ones) must still apply: after a refactor moves the code a
    # mutant names, a silently skipped mutant would hide the lost test power. Cheap: text reads only.
    stale = [m for m in MUTANTS if _matches(args.root, m) != 1]
    for m in stale:
        print(f"STALE MUTANT {m.name}: expected one match of {m.old!r} in {m.path}, found {_matches(args.root, m)}")
    if stale:
        print(f"{len(stale)} mutant(s) no longer apply: re-point them to where the code lives now")
        return 2
    mutants = [m for m in MUTANTS if not args.only or m.name in args.only]
    if args.list:
        print("\n".join(f"{m.name}: {m.path}" for m in mutants))
        return 0
    if not mutants:
        print("no mutant selected")
        return 2
    survivors = []
    for n, mutant in enumerate(mutants, 1):
        path = args.root / "src/lisa" / mutant.path
        original = path.read_text()
        try:
            path.write_text(original.replace(mutant.old, mutant.new))
            verdict, seconds = run_tests(args.root, mutant.tests or tuple(TESTS), args.timeout)
        finally:
            path.write_text(original)
        print(f"[{n}/{len(mutants)}] {mutant.name:36s} {verdict:16s} {seconds:6.1f}s", flush=True)
        if verdict == "survived":
            survivors.append(mutant.name)
    killed = len(mutants) - len(survivors)
    print(f"killed {killed}/{len(mutants)} ({100.0 * killed / len(mutants):.0f} %); survivors: {', '.join(survivors) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
