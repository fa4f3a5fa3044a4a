"""configs/tiny-shapes/train-v2.sh on a run tree whose training stages are all done: it must
resume nothing, and give v3 its no-LLM baseline (v2's of the same seed, linked; or trained
into the v3 folder with a valid config) so that evaluate.sh finds `RUN/baseline/model`.

The stages themselves take hours, so `lisa` and `python` are replaced on PATH by a recorder;
the script's own logic (which stage to skip, which folder to link, which config to write) runs
for real in bash, and the baseline config it writes is read by the real config parser."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from lisa.baselines.train import load_config
from lisa.train.config import load_config as load_train_config

ROOT = Path(__file__).resolve().parents[1]
SHARED = ("1-sam", "1b-sam-dense", "1c-sam-fine")
RECORDER = '#!/bin/sh\necho "$(basename "$0") $*" >> "$CALLS"\n'


def _finished_tree(root: Path, v2_baselines: tuple[str, ...]) -> None:
    """The recipe's outputs as `train-v2.sh` checks for them, seeds 0 and 1, v2 and v3."""
    (root / "configs/tiny-shapes").mkdir(parents=True)
    for name in ("train-v2.sh", "baseline-v2.yaml", "3a-lisa-few-v3.yaml", "3-lisa-v3.yaml", "4-reason-v3.yaml",
                 "4-reason-v6.yaml", "4-presence.yaml", "4-more-1.yaml", "4-more-2.yaml", "4-vision-1.yaml",
                 "4-vision-2.yaml"):
        shutil.copy(ROOT / "configs/tiny-shapes" / name, root / "configs/tiny-shapes")
    for world, splits in (("shapes", ("train", "val", "test")), ("shapes-few", ("train",))):
        for split in splits:
            (root / f"data/{world}/{split}").mkdir(parents=True)
            for family in ("locate", "present"):
                (root / f"data/{world}/{split}/{family}.jsonl").touch()
    (root / "data/shapes-reason239/train").mkdir(parents=True)
    for stage in SHARED:
        (root / f"runs/lisa-tiny-v2/{stage}/sam").mkdir(parents=True)
        (root / f"runs/lisa-tiny-v2/{stage}/sam/model.safetensors").touch()
        (root / f"runs/lisa-tiny-v2/{stage}/sam/config.json").write_text("{}")
    models = ["lisa-tiny-v2/2-vlm"] + [f"lisa-tiny-v3/{s}" for s in ("2a-vision-cells", "2b-vlm-locate")]
    for run in ("lisa-tiny-v2", "lisa-tiny-v3", "lisa-tiny-v3-seed1"):
        models += [f"{run}/{s}" for s in ("3a-lisa-few", "3-lisa", "4-reason")]
    for folder in models + [f"{run}/baseline" for run in v2_baselines]:
        (root / f"runs/{folder}/model").mkdir(parents=True)
        (root / f"runs/{folder}/model/lisa_config.json").write_text("{}")


def _run_recipe(root: Path, seed: int, recipe: str | None = None) -> list[str]:
    bin_dir = root / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("lisa", "python"):
        (bin_dir / tool).write_text(RECORDER)
        (bin_dir / tool).chmod(0o755)
    calls = root / f"calls-{seed}.txt"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(calls), "SEED": str(seed)}
    env.pop("RECIPE", None)  # None: the default recipe
    if recipe:
        env["RECIPE"] = recipe
    subprocess.run(["bash", "configs/tiny-shapes/train-v2.sh"], cwd=root, env=env, check=True,
                   capture_output=True, text=True)
    return calls.read_text().splitlines() if calls.exists() else []


@pytest.mark.parametrize("seed,v2_run", [(0, "lisa-tiny-v2"), (1, "lisa-tiny-v2-seed1")])
def test_v3_links_v2s_baseline_of_the_same_seed(tmp_path: Path, seed: int, v2_run: str) -> None:
    _finished_tree(tmp_path, v2_baselines=("lisa-tiny-v2", "lisa-tiny-v2-seed1"))
    v3_run = "lisa-tiny-v3" if seed == 0 else "lisa-tiny-v3-seed1"
    assert _run_recipe(tmp_path, seed) == []  # every stage done: nothing trained again
    link = tmp_path / "runs" / v3_run / "baseline"
    assert link.is_symlink()
    assert link.resolve() == (tmp_path / "runs" / v2_run / "baseline").resolve()
    assert (link / "model/lisa_config.json").is_file()


def test_v3_trains_its_baseline_when_v2_has_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _finished_tree(tmp_path, v2_baselines=())
    calls = _run_recipe(tmp_path, seed=1)
    config_path = tmp_path / "runs/lisa-tiny-v3-seed1/configs/baseline-v3.yaml"
    assert calls == [f"lisa baseline train --config {config_path.relative_to(tmp_path)}"]
    assert not (tmp_path / "runs/lisa-tiny-v3-seed1/baseline").is_symlink()
    monkeypatch.chdir(tmp_path)  # the config's paths are relative to the repository root
    config = load_config(config_path)
    config.check()  # its SAM folder exists
    assert config.run_dir == "runs/lisa-tiny-v3-seed1/baseline" and config.seed == 1
    assert config.sam == "runs/lisa-tiny-v2/1c-sam-fine/sam"  # seed 0's SAM, shared by every seed


def test_v2_trains_its_baseline_from_its_own_config(tmp_path: Path) -> None:
    _finished_tree(tmp_path, v2_baselines=())
    assert _run_recipe(tmp_path, seed=0, recipe="v2") == [
        "lisa baseline train --config configs/tiny-shapes/baseline-v2.yaml"]
    assert not (tmp_path / "runs/lisa-tiny-v2/baseline").exists()  # the recorder trained nothing


def test_v3_adds_the_later_query_families_to_an_older_world(tmp_path: Path) -> None:
    """A world written before present.jsonl existed is written again with the same seed (the
    same bytes, plus the new file) before any stage runs; the others are left alone."""
    _finished_tree(tmp_path, v2_baselines=("lisa-tiny-v2", "lisa-tiny-v2-seed1"))
    (tmp_path / "data/shapes/val/present.jsonl").unlink()
    assert _run_recipe(tmp_path, seed=0) == ["lisa shapes generate --out data/shapes --split val --overwrite"]


CELLS = "python configs/tiny-shapes/train_vision_cells.py"


def _assert_v3_rows_linked(root: Path, run: str, seed: int) -> None:
    """evaluate.sh's zero-shot and no-LLM rows of ``run``: v3's of the same seed (its baseline v2's)."""
    suffix = "-seed1" if seed else ""
    for stage, target in (("3-lisa", f"lisa-tiny-v3{suffix}/3-lisa"), ("baseline", f"lisa-tiny-v2{suffix}/baseline")):
        assert (root / "runs" / run / stage).resolve() == (root / "runs" / target).resolve()


def test_v6_trains_the_vision_tower_longer_then_stage_4_on_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a finished v3: 5a from v3's stage-4 model, 5b from 5a, then stage 4 on 5b's output
    (the config's base is the folder 5b writes), and evaluate.sh's other rows linked to v3's."""
    _finished_tree(tmp_path, v2_baselines=("lisa-tiny-v2", "lisa-tiny-v2-seed1"))
    calls = _run_recipe(tmp_path, seed=0, recipe="v6")
    assert calls == [
        (f"{CELLS} --model runs/lisa-tiny-v3/4-reason/model --out runs/lisa-tiny-v6/5a-vision-cells/model"
         " --steps 6000 --train-scenes 8000 --threads 2"),
        (f"{CELLS} --model runs/lisa-tiny-v6/5a-vision-cells/model --out runs/lisa-tiny-v6/5b-vision-cells/model"
         " --steps 9000 --train-scenes 16000 --threads 2"),
        "lisa train --config configs/tiny-shapes/4-reason-v6.yaml",
        "lisa export --run runs/lisa-tiny-v6/4-reason --out runs/lisa-tiny-v6/4-reason/model"]
    monkeypatch.chdir(tmp_path)
    config = load_train_config("configs/tiny-shapes/4-reason-v6.yaml")
    assert config.model.base == "runs/lisa-tiny-v6/5b-vision-cells/model" and config.seed == 0
    assert config.run_dir == "runs/lisa-tiny-v6/4-reason"
    _assert_v3_rows_linked(tmp_path, "lisa-tiny-v6", seed=0)


def test_v6_seed_1_trains_only_its_stage_4_on_seed_0s_vision_tower(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    _finished_tree(tmp_path, v2_baselines=("lisa-tiny-v2", "lisa-tiny-v2-seed1"))
    (tmp_path / "runs/lisa-tiny-v6/5b-vision-cells/model").mkdir(parents=True)
    (tmp_path / "runs/lisa-tiny-v6/5b-vision-cells/model/lisa_config.json").write_text("{}")
    config_path = "runs/lisa-tiny-v6-seed1/configs/4-reason-v6.yaml"
    assert _run_recipe(tmp_path, seed=1, recipe="v6") == [
        f"lisa train --config {config_path}",
        "lisa export --run runs/lisa-tiny-v6-seed1/4-reason --out runs/lisa-tiny-v6-seed1/4-reason/model"]
    monkeypatch.chdir(tmp_path)
    config = load_train_config(config_path)
    assert config.seed == 1 and config.run_dir == "runs/lisa-tiny-v6-seed1/4-reason"
    assert config.model.base == "runs/lisa-tiny-v6/5b-vision-cells/model"  # seed 0's
    _assert_v3_rows_linked(tmp_path, "lisa-tiny-v6-seed1", seed=1)


def test_v6_seed_1_refuses_to_start_before_seed_0s_vision_tower(tmp_path: Path) -> None:
    _finished_tree(tmp_path, v2_baselines=("lisa-tiny-v2", "lisa-tiny-v2-seed1"))
    with pytest.raises(subprocess.CalledProcessError) as failure:
        _run_recipe(tmp_path, seed=1, recipe="v6")
    assert "run RECIPE=v6 without SEED first" in failure.value.stderr
    assert not (tmp_path / "runs/lisa-tiny-v6-seed1/4-reason").exists()


FIT = "python configs/tiny-shapes/fit_presence_head.py"


def _finished_v6(root: Path) -> None:
    _finished_tree(root, v2_baselines=("lisa-tiny-v2", "lisa-tiny-v2-seed1"))
    for folder in ("lisa-tiny-v6/5b-vision-cells", "lisa-tiny-v6/4-reason"):
        (root / f"runs/{folder}/model").mkdir(parents=True)
        (root / f"runs/{folder}/model/lisa_config.json").write_text("{}")
    (root / "runs/lisa-tiny-v6/5a-vision-cells/model").mkdir(parents=True)
    (root / "runs/lisa-tiny-v6/5a-vision-cells/model/lisa_config.json").write_text("{}")


def _calibration_world_and_fitted_head(recipe: str) -> list[str]:
    """The first commands of v8 and v9 on a finished v6: the calibration world, then the head
    fitted on v6's frozen seed-0 model into the recipe's 4-fitted."""
    return ["lisa shapes generate --out data/shapes-calib --split train --seed 20261207 --n 400",
            (f"{FIT} --model runs/lisa-tiny-v6/4-reason/model --out runs/lisa-tiny-{recipe}/4-fitted/model"
             f" --features runs/lisa-tiny-{recipe}/4-fitted/features.pt")]


def test_v8_fits_the_head_trains_it_in_stage_4_then_calibrates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a finished v6: the calibration world, the head fitted on v6's model, stage 4 with the
    head from the fitted model's folder, its export, then the threshold set on the calibration
    world into 4-reason (what evaluate.sh scores), and the other rows linked to v3's."""
    _finished_v6(tmp_path)
    calls = _run_recipe(tmp_path, seed=0, recipe="v8")
    assert calls == [
        *_calibration_world_and_fitted_head("v8"),
        "lisa train --config configs/tiny-shapes/4-presence.yaml",
        "lisa export --run runs/lisa-tiny-v8/4-presence --out runs/lisa-tiny-v8/4-presence/model",
        (f"{FIT} --calibrate --model runs/lisa-tiny-v8/4-presence/model --data-dir data/shapes-calib"
         " --out runs/lisa-tiny-v8/4-reason/model")]
    monkeypatch.chdir(tmp_path)
    config = load_train_config("configs/tiny-shapes/4-presence.yaml")
    assert config.model.base == "runs/lisa-tiny-v8/4-fitted/model" and config.seed == 0
    assert config.run_dir == "runs/lisa-tiny-v8/4-presence" and config.presence_weight == 1.0
    _assert_v3_rows_linked(tmp_path, "lisa-tiny-v8", seed=0)


def _finished_seed_0_head(root: Path, recipe: str) -> None:
    """What a seed-1 run of v8 or v9 starts from: a finished v6, the calibration world and seed
    0's fitted head."""
    _finished_v6(root)
    (root / "data/shapes-calib/train").mkdir(parents=True)
    (root / f"runs/lisa-tiny-{recipe}/4-fitted/model").mkdir(parents=True)
    (root / f"runs/lisa-tiny-{recipe}/4-fitted/model/lisa_config.json").write_text("{}")


def test_v8_seed_1_trains_only_its_last_stage_on_seed_0s_fitted_head(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _finished_seed_0_head(tmp_path, "v8")
    config_path = "runs/lisa-tiny-v8-seed1/configs/4-presence.yaml"
    assert _run_recipe(tmp_path, seed=1, recipe="v8") == [
        f"lisa train --config {config_path}",
        "lisa export --run runs/lisa-tiny-v8-seed1/4-presence --out runs/lisa-tiny-v8-seed1/4-presence/model",
        (f"{FIT} --calibrate --model runs/lisa-tiny-v8-seed1/4-presence/model --data-dir data/shapes-calib"
         " --out runs/lisa-tiny-v8-seed1/4-reason/model")]
    monkeypatch.chdir(tmp_path)
    config = load_train_config(config_path)
    assert config.seed == 1 and config.run_dir == "runs/lisa-tiny-v8-seed1/4-presence"
    assert config.model.base == "runs/lisa-tiny-v8/4-fitted/model"  # seed 0's
    _assert_v3_rows_linked(tmp_path, "lisa-tiny-v8-seed1", seed=1)


ATTACH = "python configs/tiny-shapes/attach_presence_head.py"


def test_v9_trains_stage_4_longer_then_puts_on_and_calibrates_the_fitted_head(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """On a finished v6: the calibration world, the head fitted on v6's model, two runs of stage 4
    (the second from the first's export, neither with a presence head), the fitted head put on
    the second's model, then its threshold set on the calibration world into 4-reason."""
    _finished_v6(tmp_path)
    calls = _run_recipe(tmp_path, seed=0, recipe="v9")
    assert calls == [
        *_calibration_world_and_fitted_head("v9"),
        "lisa train --config configs/tiny-shapes/4-more-1.yaml",
        "lisa export --run runs/lisa-tiny-v9/4-more-1 --out runs/lisa-tiny-v9/4-more-1/model",
        "lisa train --config configs/tiny-shapes/4-more-2.yaml",
        "lisa export --run runs/lisa-tiny-v9/4-more-2 --out runs/lisa-tiny-v9/4-more-2/model",
        (f"{ATTACH} --head-from runs/lisa-tiny-v9/4-fitted/model --model runs/lisa-tiny-v9/4-more-2/model"
         " --out runs/lisa-tiny-v9/4-headed/model"),
        (f"{FIT} --calibrate --model runs/lisa-tiny-v9/4-headed/model --data-dir data/shapes-calib"
         " --out runs/lisa-tiny-v9/4-reason/model")]
    monkeypatch.chdir(tmp_path)
    first, second = (load_train_config(f"configs/tiny-shapes/4-more-{n}.yaml") for n in (1, 2))
    assert first.model.base == "runs/lisa-tiny-v6/4-reason/model" and first.run_dir == "runs/lisa-tiny-v9/4-more-1"
    assert second.model.base == "runs/lisa-tiny-v9/4-more-1/model" and second.run_dir == "runs/lisa-tiny-v9/4-more-2"
    assert first.seed == second.seed == 0 and first.presence_weight == second.presence_weight == 0.0
    assert (first.optim.lr, second.optim.lr) == (5.0e-4, 2.5e-4)
    assert first.optim.max_steps == second.optim.max_steps == 1000
    _assert_v3_rows_linked(tmp_path, "lisa-tiny-v9", seed=0)


def test_v9_seed_1_trains_both_runs_with_its_seed_and_seed_0s_head(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _finished_seed_0_head(tmp_path, "v9")
    r, configs = "runs/lisa-tiny-v9-seed1", "runs/lisa-tiny-v9-seed1/configs"
    assert _run_recipe(tmp_path, seed=1, recipe="v9") == [
        f"lisa train --config {configs}/4-more-1.yaml",
        f"lisa export --run {r}/4-more-1 --out {r}/4-more-1/model",
        f"lisa train --config {configs}/4-more-2.yaml",
        f"lisa export --run {r}/4-more-2 --out {r}/4-more-2/model",
        f"{ATTACH} --head-from runs/lisa-tiny-v9/4-fitted/model --model {r}/4-more-2/model --out {r}/4-headed/model",
        f"{FIT} --calibrate --model {r}/4-headed/model --data-dir data/shapes-calib --out {r}/4-reason/model"]
    monkeypatch.chdir(tmp_path)
    first, second = (load_train_config(f"{configs}/4-more-{n}.yaml") for n in (1, 2))
    assert first.seed == second.seed == 1
    assert first.run_dir == f"{r}/4-more-1" and second.run_dir == f"{r}/4-more-2"
    assert first.model.base == "runs/lisa-tiny-v6/4-reason/model"  # seed 0's v6
    assert second.model.base == f"{r}/4-more-1/model"  # this seed's first run
    _assert_v3_rows_linked(tmp_path, "lisa-tiny-v9-seed1", seed=1)


def _finished_v9(root: Path, seed: int) -> str:
    """A finished v9 of ``seed`` on seed 0's fitted head (what v10 of that seed starts from); its folder."""
    _finished_seed_0_head(root, "v9")
    run = "runs/lisa-tiny-v9" + (f"-seed{seed}" if seed else "")
    for stage in ("4-more-1", "4-more-2", "4-headed", "4-reason"):
        (root / f"{run}/{stage}/model").mkdir(parents=True)
        (root / f"{run}/{stage}/model/lisa_config.json").write_text("{}")
    return run


@pytest.mark.parametrize("seed", [0, 1])
def test_v10_trains_v9s_stage_4_on_with_the_vision_tower_then_puts_on_v9s_head(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    """On a finished v9 of the same seed: two runs of the lisa_vision recipe, the first from v9's
    trained model before its head, the second from the first's export, then v9's fitted head (seed
    0's, fitted on v6) put on and its threshold set on the calibration world into 4-reason."""
    v9 = _finished_v9(tmp_path, seed)
    r = "runs/lisa-tiny-v10" + (f"-seed{seed}" if seed else "")
    configs = f"{r}/configs" if seed else "configs/tiny-shapes"
    assert _run_recipe(tmp_path, seed=seed, recipe="v10") == [
        f"lisa train --config {configs}/4-vision-1.yaml",
        f"lisa export --run {r}/4-vision-1 --out {r}/4-vision-1/model",
        f"lisa train --config {configs}/4-vision-2.yaml",
        f"lisa export --run {r}/4-vision-2 --out {r}/4-vision-2/model",
        f"{ATTACH} --head-from runs/lisa-tiny-v9/4-fitted/model --model {r}/4-vision-2/model --out {r}/4-headed/model",
        f"{FIT} --calibrate --model {r}/4-headed/model --data-dir data/shapes-calib --out {r}/4-reason/model"]
    monkeypatch.chdir(tmp_path)
    first, second = (load_train_config(f"{configs}/4-vision-{n}.yaml") for n in (1, 2))
    assert first.seed == second.seed == seed
    assert first.run_dir == f"{r}/4-vision-1" and second.run_dir == f"{r}/4-vision-2"
    assert first.model.base == f"{v9}/4-more-2/model" and second.model.base == f"{r}/4-vision-1/model"
    assert first.recipe == second.recipe == "lisa_vision" and first.presence_weight == second.presence_weight == 0.0
    assert first.optim.lr == second.optim.lr == 2.5e-4 and first.optim.max_steps == second.optim.max_steps == 1000
    _assert_v3_rows_linked(tmp_path, r.removeprefix("runs/"), seed=seed)


def test_v10_trains_v9_first_when_it_is_not_done(tmp_path: Path) -> None:
    _finished_seed_0_head(tmp_path, "v9")
    calls = _run_recipe(tmp_path, seed=0, recipe="v10")
    trains = [c for c in calls if c.startswith("lisa train")]
    assert trains == [f"lisa train --config configs/tiny-shapes/{s}.yaml"
                      for s in ("4-more-1", "4-more-2", "4-vision-1", "4-vision-2")]
