"""Every shipped config loads, validates against its stage's schema and carries its numbers."""

from __future__ import annotations

import importlib.util

import ml_collections
import pytest

from synthaug.pipeline import config as config_lib
from synthaug.pipeline.errors import ConfigError, MissingPathError
from synthaug.pipeline.schemas import STAGES, get_schema


def _module(name):
    path, _ = config_lib.resolve_config_path(name)
    spec = importlib.util.spec_from_file_location("cfg_under_test", path)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m


def _variants(m):
    if hasattr(m, "variants"):
        return m.variants()
    if hasattr(m, "PAPER"):
        return list(m.PAPER)
    return [None]


PAPER_CONFIGS = config_lib.list_configs("paper")
ALL_SPECS = [
    name + (f":{v}" if v else "")
    for name in config_lib.list_configs()
    for v in _variants(_module(name))
]


def test_paper_configs_cover_the_issue():
    expected = {
        "paper/base64_finetune",
        "paper/sr256_finetune",
        "paper/sample_final",
        "paper/sweep_base",
        "paper/sweep_sr",
        "paper/resnet50",
        "paper/data_size",
        "paper/vit_s16",
        "paper/deit_s",
        "paper/deit_b",
        "paper/deit_l",
    }
    assert expected <= set(PAPER_CONFIGS)


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_config_validates_against_its_schema(spec):
    raw = config_lib.load_config_file(spec)
    assert raw.stage in STAGES
    # Every key of the file itself must be in the schema: validate() raises otherwise.
    cfg = config_lib.load_config(spec, raw.stage)
    schema = get_schema(raw.stage)
    assert set(cfg.keys()) == set(schema.keys())
    assert cfg.stage == raw.stage


@pytest.mark.parametrize("name", PAPER_CONFIGS)
def test_paper_docstring_gives_command_hardware_and_number(name):
    m = _module(name)
    doc = m.__doc__ or ""
    assert "Command:" in doc and "synthaug " in doc, name
    assert "Hardware:" in doc, name
    assert "aper" in doc, name  # "Paper: ..." or "paper ..."
    for v in _variants(m):
        spec = name + (f":{v}" if v else "")
        cfg = config_lib.load_config(spec, config_lib.load_config_file(spec).stage)
        assert cfg.hardware, spec
        keys = ("fid", "inception_score", "top1", "top5")
        numbers = [cfg.paper[k] for k in keys if k in cfg.paper and cfg.paper[k] > 0]
        assert numbers, f"{spec} carries no paper number"
        for x in numbers:  # every number the config carries is quoted in its docstring
            assert f"{x:.2f}" in doc or f"{x:g}" in doc, (spec, x)


def test_paper_numbers_match_paper_md():
    r50 = {
        v: config_lib.load_config(f"paper/resnet50:{v}", "train-classifier")
        for v in ("real", "synthetic", "synthetic_1024", "mixed")
    }
    assert r50["real"].paper.top1 == 76.39
    assert (r50["synthetic"].paper.top1, r50["synthetic"].paper.top5) == (64.96, 85.66)
    assert (r50["synthetic_1024"].paper.top1, r50["synthetic_1024"].paper.top5) == (69.24, 88.10)
    assert r50["mixed"].paper.top1 == 78.17
    sizes = {
        "1.2M": 76.39,
        "2.4M": 77.61,
        "3.6M": 77.16,
        "4.8M": 76.52,
        "6.0M": 76.09,
        "12M": 75.04,
    }
    for v, top1 in sizes.items():
        cfg = config_lib.load_config(f"paper/data_size:{v}", "train-classifier")
        assert cfg.paper.top1 == top1
        total = 1_200_000 + cfg.data.synthetic_images
        assert total == pytest.approx(float(v[:-1]) * 1e6)
    for name, (real, mixed) in {
        "deit_s": (78.97, 80.49),
        "deit_b": (81.79, 82.84),
        "deit_l": (82.22, 83.05),
        "vit_s16": (79.89, 81.00),
    }.items():
        assert config_lib.load_config(f"paper/{name}:real", "train-classifier").paper.top1 == real
        assert config_lib.load_config(f"paper/{name}:mixed", "train-classifier").paper.top1 == mixed


def test_final_sampling_settings():
    cfg = config_lib.load_config("paper/sample_final", "sample")
    assert (cfg.base.guidance, cfg.base.log_var_mix, cfg.base.sampler, cfg.base.steps) == (
        1.25,
        0.0,
        "ddpm",
        1000,
    )
    assert (cfg.sr1.guidance, cfg.sr1.log_var_mix, cfg.sr1.sampler, cfg.sr1.steps) == (
        1.0,
        0.1,
        "ddpm",
        1000,
    )
    assert cfg.base.aug_level == cfg.sr1.aug_level == 0.0
    assert not cfg.sr2.enabled
    assert cfg.per_class * 1000 == 1_200_000
    big = config_lib.load_config("paper/sample_final:1024", "sample")
    assert big.sr2.enabled and big.sr2.sampler == "ddim" and big.sr2.steps == 32
    base = config_lib.load_config("paper/sweep_base", "sample")
    assert len(_module("paper/sweep_base").variants()) == 6 * 5 * 3
    assert (base.base.guidance, base.base.log_var_mix, base.base.steps) == (1.25, 0.0, 1000)


def test_finetune_recipes():
    b = config_lib.load_config("paper/base64_finetune", "finetune")
    assert (b.train.optimizer, b.train.steps, b.train.batch_size) == ("adafactor", 210_000, 2048)
    s = config_lib.load_config("paper/sr256_finetune", "finetune")
    assert (s.train.optimizer, s.train.steps, s.train.learning_rate) == ("adam", 490_000, 1e-4)
    assert b.train.text_drop_prob == s.train.text_drop_prob == 0.1


def test_unknown_key_in_file_is_an_error(tmp_path):
    f = tmp_path / "bad.py"
    f.write_text(
        "import ml_collections\n"
        "def get_config():\n"
        "    return ml_collections.ConfigDict({'stage': 'sample', 'per_klass': 3})\n"
    )
    with pytest.raises(ConfigError, match="per_klass"):
        config_lib.load_config(str(f), "sample")


def test_wrong_type_and_wrong_stage_are_errors(tmp_path):
    with pytest.raises(ConfigError, match="per_class"):
        config_lib.validate({"stage": "sample", "per_class": "many"})
    with pytest.raises(ConfigError, match="not 'sample'"):
        config_lib.load_config("paper/resnet50", "sample")


def test_overrides_are_typed_by_the_schema():
    cfg = config_lib.load_config(
        "paper/sample_final",
        "sample",
        ["per_class=3", "base.guidance=2", "sr2.enabled=true", "classes=zero,one", "out_dir=x"],
    )
    assert cfg.per_class == 3 and isinstance(cfg.per_class, int)
    assert cfg.base.guidance == 2.0 and isinstance(cfg.base.guidance, float)
    assert cfg.sr2.enabled is True
    assert cfg.classes == ("zero", "one")
    assert cfg.out_dir == "x"
    for bad in ("per_class=3.5", "base.guidanse=2", "base=3", "sr2.enabled=maybe", "nokey"):
        with pytest.raises(ConfigError):
            config_lib.load_config("paper/sample_final", "sample", [bad])


def test_variants_and_missing_configs():
    with pytest.raises(ConfigError, match="unknown variant"):
        config_lib.load_config("paper/resnet50:tiny", "train-classifier")
    with pytest.raises(MissingPathError, match="nope"):
        config_lib.load_config("paper/nope", "sample")


def test_validated_config_is_locked():
    cfg = config_lib.load_config("demo/default", "demo")
    assert isinstance(cfg, ml_collections.ConfigDict)
    with pytest.raises(AttributeError):
        cfg.new_key = 1


@pytest.mark.parametrize("spec", [s for s in ALL_SPECS if s.startswith("paper/")])
def test_paper_config_names_exist_in_the_leaf_packages(spec):
    from synthaug import classifiers, diffusion_core, text_encoder

    raw = config_lib.load_config_file(spec)
    cfg = config_lib.load_config(spec, raw.stage)
    if cfg.stage == "train-classifier":
        assert cfg.model.name in classifiers.MODEL_NAMES
    if cfg.stage == "finetune":
        diffusion_core.get_preset(cfg.model.preset)
    if cfg.stage in ("finetune", "sample"):
        text_encoder.get_config(cfg.text.encoder)
    if cfg.stage == "sample":
        for key in ("base", "sr1", "sr2"):
            diffusion_core.get_preset(cfg[key].preset)
