"""Training YAML and lisa_config.json are validated before any model is built: each bad value is
one LisaError line naming the file, the key, the expected type and the allowed range."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lisa.errors import LisaError
from lisa.model.config import LisaConfig
from lisa.train.config import load_config

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "src" / "lisa" / "checkpoints" / "lisa-tiny"


def smoke() -> dict:
    return yaml.safe_load((ROOT / "configs" / "smoke.yaml").read_text())


def write_yaml(path: Path, data: dict, edit: tuple[str, object] | None = None) -> Path:
    data = copy.deepcopy(data)
    if edit is not None:
        key, value = edit
        *parents, last = key.split(".")
        target = data
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        target[last] = value
    path.write_text(yaml.safe_dump(data))
    return path


# ---- training YAML --------------------------------------------------------------------------
@pytest.mark.parametrize("key, value, message", [
    ("precompute_sam_embeddings", "no", r"precompute_sam_embeddings must be true or false, got 'no'"),
    ("optim.warmup_steps", -5, r"optim\.warmup_steps must be an integer >= 0, got -5"),
    ("optim.lr", "fast", r"optim\.lr must be a number > 0, got 'fast'"),
    ("optim.lr", 0, r"optim\.lr must be a number > 0, got 0"),
    ("optim.lr", True, r"optim\.lr must be a number > 0, got True"),
    ("optim.betas", [0.9, 1.5], r"optim\.betas\[1\] must be a number in \[0, 1\), got 1\.5"),
    ("optim.betas", [0.9], r"optim\.betas must be a list of numbers in \[0, 1\) of length 2"),
    ("optim.max_steps", 0, r"optim\.max_steps must be an integer >= 1, got 0"),
    ("optim.batch_size", 2.5, r"optim\.batch_size must be an integer >= 1, got 2\.5"),
    ("lora.dropout", 1.0, r"lora\.dropout must be a number in \[0, 1\), got 1\.0"),
    ("lora.r", "eight", r"lora\.r must be an integer >= 1, got 'eight'"),
    ("model.precision", "fp8", r"model\.precision must be one of 'auto', 'bf16', 'fp16', 'no', got 'fp8'"),
    ("model.gradient_checkpointing", "yes", r"model\.gradient_checkpointing must be true or false"),
    ("model.build", {"text_hidden": "big"}, r"model\.build\.text_hidden must be an integer, got 'big'"),
    ("model.build", {"text_hiden": 32}, r"unknown config key model\.build\.text_hiden"),
    ("data", [], r"data must be a list of mappings of keys with at least 1 item, got \[\]"),
    ("data.0.type", "pictures", r"data\[0\]\.type must be one of 'jsonl', .*got 'pictures'"),
    ("data.0.rate", -1, r"data\[0\]\.rate must be a number > 0, got -1"),
    ("val.limit", 0, r"val\.limit must be an integer >= 1 \(or null\), got 0"),
    ("val.batch_size", None, r"val\.batch_size must be an integer >= 1, got None"),
    ("seed", "x", r"seed must be an integer >= 0, got 'x'"),
    ("threads", 0, r"threads must be an integer >= 1 \(or null\), got 0"),
    ("save_every", 0, r"save_every must be an integer >= 1, got 0"),
    ("optim.lrr", 1, r"unknown config key optim\.lrr \(known: .*lr.*\)"),
    ("model", "lisa-tiny", r"model must be a mapping of keys, got 'lisa-tiny'"),
])
def test_bad_value_is_one_line_naming_file_key_and_range(tmp_path: Path, key: str, value, message: str) -> None:
    path = write_yaml(tmp_path / "bad.yaml", smoke(), (key, value))
    with pytest.raises(LisaError) as error:
        load_config(path)
    text = str(error.value)
    assert "\n" not in text
    assert text.startswith(f"{path}: ")
    assert __import__("re").search(message, text), text


def test_missing_required_key(tmp_path: Path) -> None:
    data = smoke()
    del data["run_dir"]
    with pytest.raises(LisaError, match=r"bad\.yaml: run_dir is missing: give a string"):
        load_config(write_yaml(tmp_path / "bad.yaml", data))


def test_yaml_1_1_exponents_are_numbers(tmp_path: Path) -> None:
    """PyYAML (YAML 1.1) reads 3e-3 without a dot as the string '3e-3'; it is taken as the number."""
    path = tmp_path / "exp.yaml"
    path.write_text((ROOT / "configs" / "smoke.yaml").read_text().replace("lr: 3.0e-3", "lr: 3e-3")
                    .replace("max_steps: 120", "max_steps: 1.2e2"))
    assert yaml.safe_load(path.read_text())["optim"]["lr"] == "3e-3"  # what YAML alone gives
    config = load_config(path)
    assert config.optim.lr == 3e-3 and isinstance(config.optim.lr, float)
    assert config.optim.max_steps == 120 and isinstance(config.optim.max_steps, int)


def test_unquoted_no_is_false_but_quoted_no_is_refused(tmp_path: Path) -> None:
    text = (ROOT / "configs" / "smoke.yaml").read_text()
    path = tmp_path / "c.yaml"
    path.write_text(text.replace("precompute_sam_embeddings: true", "precompute_sam_embeddings: no"))
    assert load_config(path).precompute_sam_embeddings is False
    path.write_text(text.replace("precompute_sam_embeddings: true", 'precompute_sam_embeddings: "no"'))
    with pytest.raises(LisaError, match="must be true or false, got 'no'"):
        load_config(path)


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("run_dir: r\nmodel: {base: x\n")
    with pytest.raises(LisaError, match=r"broken\.yaml: not valid YAML at line \d+, column \d+"):
        load_config(path)


def test_shipped_model_name_is_a_base(tmp_path: Path) -> None:
    """`model.base: lisa-tiny` means the shipped model, as `lisa segment --model lisa-tiny` does."""
    from lisa.train.model_setup import base_dir

    data = smoke()
    data["model"] = {"base": "lisa-tiny"}
    config = load_config(write_yaml(tmp_path / "c.yaml", data))
    assert base_dir(config).resolve() == SHIPPED.resolve()
    data["model"] = {"base": str(tmp_path / "lisa-tiny")}  # a path stays a path, even when absent
    assert base_dir(load_config(write_yaml(tmp_path / "c.yaml", data))) == tmp_path / "lisa-tiny"


def _same_as_written(written, parsed, key: str) -> None:
    if isinstance(written, dict) and isinstance(parsed, dict):
        for name, value in written.items():
            _same_as_written(value, parsed[name], f"{key}.{name}")
    elif isinstance(written, list):
        assert len(written) == len(parsed), key
        for index, (value, got) in enumerate(zip(written, parsed)):
            _same_as_written(value, got, f"{key}[{index}]")
    else:
        assert parsed == written and type(parsed) is type(written) or (type(written) is int and type(parsed) is float), key


@pytest.mark.parametrize("path", [p for p in sorted((ROOT / "configs").rglob("*.yaml"))
                                  if "accelerate" not in p.parts and yaml.safe_load(p.read_text()).get("stage") != "sam"
                                  and not p.stem.startswith("baseline")], ids=lambda p: p.stem)
def test_shipped_configs_keep_their_values(path: Path) -> None:
    """Validation changes no value the shipped recipes write (ints written for floats become floats)."""
    import dataclasses

    written = yaml.safe_load(path.read_text())
    parsed = dataclasses.asdict(load_config(path))
    for section in [written.get("val") or {}, *written.get("data", [])]:  # the one rewrite: {run_dir}
        if "dir" in section:
            section["dir"] = section["dir"].replace("{run_dir}", written["run_dir"])
    _same_as_written(written, parsed, path.stem)


def _cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, "-m", "lisa.cli", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300)


def assert_one_line_error(run: subprocess.CompletedProcess, *needles: str) -> None:
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_cli_train_rejects_a_bad_config_before_building(tmp_path: Path) -> None:
    data = smoke()
    data["run_dir"] = str(tmp_path / "run")
    path = write_yaml(tmp_path / "bad.yaml", data, ("optim.warmup_steps", -1))
    run = _cli("train", "--config", str(path))
    assert_one_line_error(run, str(path), "optim.warmup_steps", ">= 0", "-1")
    assert not (tmp_path / "run").exists()  # nothing was built or written
    run = _cli("train", "--config", str(write_yaml(tmp_path / "ok.yaml", data)), "--max-steps", "-3")
    assert_one_line_error(run, "optim.max_steps must be an integer >= 1, got -3")


# ---- lisa_config.json -------------------------------------------------------------------------
def shipped_config_copy(tmp_path: Path, edit=None) -> Path:
    folder = tmp_path / "model"
    folder.mkdir(exist_ok=True)
    data = json.loads((SHIPPED / "lisa_config.json").read_text())
    if edit is not None:
        edit(data)
    (folder / "lisa_config.json").write_text(json.dumps(data))
    return folder


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(num_image_tokens=0), r"num_image_tokens must be an integer >= 1, got 0"),
    (lambda d: d.update(num_image_tokens=-64), r"num_image_tokens must be an integer >= 1, got -64"),
    (lambda d: d.update(num_image_tokens=63), r"num_image_tokens must be 64 \(what vlm\.vision_config gives"),
    (lambda d: d.update(seg_token_id="abc"), r"seg_token_id must be an integer >= 0, got 'abc'"),
    (lambda d: d.update(seg_token_id=99999), r"seg_token_id must be an integer in \[0, 1024\)"),
    (lambda d: d.update(projector="conv"), r"projector must be one of 'mlp', 'linear', got 'conv'"),
    (lambda d: d.update(strip_text_around_tokens="false"), r"strip_text_around_tokens must be true or false"),
    (lambda d: d.update(out_dim=64), r"out_dim must be 128 \(SAM's prompt size\), got 64"),
    (lambda d: d.update(format_version=2), r"format_version 2 was written by a newer lisa-seg"),
    (lambda d: d.update(extra_key=1), r"unknown config key extra_key"),
    (lambda d: d.pop("seg_token_id"), r"seg_token_id is missing: give an integer >= 0"),
    (lambda d: d["vlm"].pop("text_config"), r"'vlm' or 'sam' section is not a complete Hugging Face config"),
])
def test_bad_lisa_config_is_named(tmp_path: Path, edit, message: str) -> None:
    folder = shipped_config_copy(tmp_path, edit)
    with pytest.raises(LisaError) as error:
        LisaConfig.load(folder)
    text = str(error.value)
    assert text.startswith(str(folder / "lisa_config.json")) and "\n" not in text
    assert __import__("re").search(message, text), text


def test_malformed_json_names_line(tmp_path: Path) -> None:
    folder = shipped_config_copy(tmp_path)
    path = folder / "lisa_config.json"
    path.write_text(path.read_text()[:200])
    with pytest.raises(LisaError, match=r"lisa_config\.json is not valid JSON \(line \d+, column \d+"):
        LisaConfig.load(folder)


def test_shipped_config_round_trips_unchanged(tmp_path: Path) -> None:
    config = LisaConfig.load(SHIPPED)
    config.save(tmp_path)
    assert json.loads((tmp_path / "lisa_config.json").read_text()) == json.loads((SHIPPED / "lisa_config.json").read_text())


def test_cli_segment_with_bad_lisa_config(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    shutil.copytree(SHIPPED, folder)
    data = json.loads((folder / "lisa_config.json").read_text())
    data["num_image_tokens"] = 0
    (folder / "lisa_config.json").write_text(json.dumps(data))
    run = _cli("segment", str(ROOT / "examples" / "umbrella.jpg"), "what keeps you dry?", "--model", str(folder),
               "--out", str(tmp_path / "out"), "--device", "cpu")
    assert_one_line_error(run, str(folder / "lisa_config.json"), "num_image_tokens", ">= 1", "got 0")
