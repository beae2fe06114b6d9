"""Every shipped config loads, validates against its stage's schema and carries its numbers."""

from __future__ import annotations

import importlib.util
import re

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
    assert (b.optimizer.name, b.train.num_steps, b.train.batch_size) == ("adafactor", 210_000, 2048)
    s = config_lib.load_config("paper/sr256_finetune", "finetune")
    assert (s.optimizer.name, s.train.num_steps, s.optimizer.learning_rate) == (
        "adam",
        490_000,
        1e-4,
    )
    assert s.optimizer.end_learning_rate == s.optimizer.learning_rate  # constant after warmup
    assert b.diffusion.p_uncond == s.diffusion.p_uncond == 0.1


@pytest.mark.parametrize("spec", [s for s in ALL_SPECS if "finetune" in s])
def test_finetune_config_embeds_the_diffusion_core_preset(spec):
    from synthaug import diffusion_core as dc

    cfg = config_lib.load_config(spec, "finetune")
    preset = dc.get_preset(cfg.preset)
    for section in preset:  # the package's sections under the package's own key names
        assert set(cfg[section].keys()) == set(preset[section].keys()), (spec, section)
    # What the stage trains with is the package config itself: no renamed copy.
    from synthaug.pipeline.models import diffusion_config

    dcfg = diffusion_config(cfg)
    assert dcfg.to_dict() == {k: cfg[k].to_dict() for k in preset}


@pytest.mark.parametrize(
    "spec",
    [
        s
        for s in ALL_SPECS
        if s.split("/")[1].split(":")[0]
        in (
            "resnet50",
            "resnet_deep",
            "data_size",
            "vit_s16",
            "deit_s",
            "deit_b",
            "deit_l",
            "classifier",
        )
    ],
)
def test_classifier_config_embeds_the_recipe(spec):
    from synthaug import classifiers as cl
    from synthaug.pipeline.classify import recipe_config

    cfg = config_lib.load_config(spec, "train-classifier")
    assert set(cfg.recipe.keys()) == set(cl.resnet_recipe().keys())
    assert recipe_config(cfg).to_dict() == cfg.recipe.to_dict()


def test_defaults_come_from_the_packages(tmp_path):
    from synthaug import classifiers as cl
    from synthaug import diffusion_core as dc

    f = tmp_path / "mine.py"
    f.write_text(
        "def get_config():\n"
        "    return {'stage': 'finetune', 'preset': 'tiny_sr', 'train': {'num_steps': 7}}\n"
    )
    cfg = config_lib.load_config(str(f), "finetune")
    want = dc.get_preset("tiny_sr")
    assert cfg.train.num_steps == 7
    assert cfg.train.save_every == want.train.save_every
    assert cfg.model.to_dict() == want.model.to_dict()
    assert cfg.optimizer.to_dict() == want.optimizer.to_dict()
    f.write_text(
        "def get_config():\n"
        "    return {'stage': 'train-classifier', 'recipe': {'epochs': 3,"
        " 'model_kwargs': {'drop_path_rate': 0.2}}}\n"
    )
    cfg = config_lib.load_config(str(f), "train-classifier", ["recipe.model_kwargs.x=1"])
    want = cl.resnet_recipe().to_dict()
    want.update(epochs=3, model_kwargs={"drop_path_rate": 0.2, "x": 1})
    assert cfg.recipe.to_dict() == want


def test_renamed_or_unknown_package_keys_are_errors(tmp_path):
    for old in ("train.steps=5", "train.checkpoint_every=5", "train.text_drop_prob=0.2"):
        with pytest.raises(ConfigError, match=old.split("=")[0]):
            config_lib.load_config("paper/base64_finetune", "finetune", [old])
    with pytest.raises(ConfigError, match="recipe.base_learning_rate"):
        config_lib.load_config(
            "paper/resnet50", "train-classifier", ["recipe.base_learning_rate=1"]
        )
    f = tmp_path / "old.py"
    f.write_text("def get_config():\n    return {'stage': 'finetune', 'train': {'steps': 5}}\n")
    with pytest.raises(ConfigError, match="'train.steps'.*train.num_steps"):
        config_lib.load_config(str(f), "finetune")
    # A misspelt key in a package section fails when the file builds it (the section is locked).
    f.write_text(
        "from synthaug.pipeline.schemas import finetune_config\n"
        "def get_config():\n    c = finetune_config('tiny_base')\n    c.train.stepz = 5\n"
        "    return c\n"
    )
    with pytest.raises(ConfigError, match="stepz"):
        config_lib.load_config(str(f), "finetune")


def test_preset_is_fixed_by_the_config_file():
    with pytest.raises(ConfigError, match="'preset' cannot be overridden"):
        config_lib.load_config("paper/base64_finetune", "finetune", ["preset=tiny_base"])
    with pytest.raises(ConfigError, match="'base.preset' cannot be overridden"):
        config_lib.load_config("demo/default", "demo", ["base.preset=imagen_base_64"])
    with pytest.raises(ConfigError, match="unknown diffusion preset 'nope'"):
        config_lib.validate({"stage": "finetune", "preset": "nope"})


@pytest.mark.parametrize("stage", ["finetune", "train-classifier", "sample", "evaluate"])
def test_mesh_and_sharding_keys(stage):
    from synthaug.tpu_launch.mesh import DEFAULT_AXES

    cfg = config_lib.load_config(None, stage)
    assert cfg.mesh.to_dict() == DEFAULT_AXES and cfg.sharding.rules == ()
    cfg = config_lib.load_config(
        None,
        stage,
        ["mesh.data=-1", "mesh.fsdp=2", "sharding.rules=(('.*/kernel$', (None, 'fsdp')),)"],
    )
    assert (cfg.mesh.data, cfg.mesh.fsdp) == (-1, 2)
    assert cfg.sharding.rules == ((".*/kernel$", (None, "fsdp")),)
    for bad, needle in (
        ("mesh.data=0", "mesh.data must be a positive axis size or -1"),
        ("mesh.fsdp=-2", "mesh.fsdp"),
        ("mesh.tensor=2", "unknown config key 'mesh.tensor'"),
        ("sharding.rules=(('(', ('fsdp',)),)", "does not compile"),
        ("sharding.rules=(('x', ('tensor',)),)", "mesh axis 'tensor'"),
        ("sharding.rules=(('x',),)", "pair"),
    ):
        with pytest.raises(ConfigError, match=re.escape(needle)):
            config_lib.load_config(None, stage, [bad])
    with pytest.raises(ConfigError, match="at most one axis may be -1"):
        config_lib.load_config(None, stage, ["mesh.fsdp=-1"])


def test_override_syntax_of_config_flags():
    cfg = config_lib.load_config("demo/sample", "sample", ["overwrite"])
    assert cfg.overwrite is True  # a bool key alone is set true
    with pytest.raises(ConfigError, match=r"--config.workdir has no value"):
        config_lib.load_config("demo/sample", "sample", ["workdir"])
    cfg = config_lib.load_config("demo/sample", "sample", ["classes=('one', 'two')"])
    assert cfg.classes == ("one", "two")


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
        assert cfg.recipe.model in classifiers.MODEL_NAMES
    if cfg.stage == "finetune":
        diffusion_core.get_preset(cfg.preset)
    if cfg.stage in ("finetune", "sample"):
        text_encoder.get_config(cfg.text.encoder)
    if cfg.stage == "sample":
        for key in ("base", "sr1", "sr2"):
            diffusion_core.get_preset(cfg[key].preset)
