"""``synthaug import-weights`` on files written by the reference implementations themselves.

The fixtures (tools/fixtures/make_pretrained_reference.py) are tiny random models saved by
guided-diffusion (``torch.save`` of ``UNetModel`` / ``SuperResModel`` state dicts) and by diffusers
(``UNet2DConditionModel.save_pretrained`` with DeepFloyd IF's block types), with the reference
forward outputs. Each is imported through the command line, read back from the orbax
checkpoint, run through ``ADMUNet`` and compared with the reference output (1e-4 relative).
"""

import json
import pathlib

import jax
import numpy as np
import pytest

from synthaug import diffusion_core as dc
from synthaug.pipeline.cli import main

FIX = pathlib.Path(__file__).parent / "fixtures" / "pretrained"
REF = np.load(FIX / "outputs.npz")

CASES = {
    "adm_tiny": ("adm", "adm_tiny.pt", "tiny_adm"),
    "adm_tiny_sr": ("adm", "adm_tiny_sr.pt", "tiny_adm_sr"),
    "if_tiny": ("deepfloyd-if", "if_tiny", "tiny_if"),
    "if_tiny_sr": ("deepfloyd-if", "if_tiny_sr/diffusion_pytorch_model.safetensors", "tiny_if_sr"),
}


def _forward(name, preset, params):
    cfg = dc.get_preset(preset)
    model = dc.make_model(cfg)
    x = REF[f"{name}/x"]
    time = (REF[f"{name}/t"] + 1) / 1000.0  # the samplers' (i + 1) / N for integer step i
    kw = {}
    if f"{name}/labels" in REF:
        kw["labels"] = REF[f"{name}/labels"]
    if f"{name}/text" in REF:
        kw["text_emb"] = REF[f"{name}/text"]
    if name == "adm_tiny_sr":  # SuperResModel upsamples inside; the cascade does it before
        kw["lowres"] = dc.upsample_lowres(REF[f"{name}/lowres"], size=x.shape[1])
    elif name == "if_tiny_sr":
        kw["lowres"] = REF[f"{name}/lowres"]
        kw["aug_level"] = REF[f"{name}/aug_step"] / 1000.0
    return np.asarray(model.apply({"params": params}, x, time, **kw))


@pytest.mark.parametrize("name", sorted(CASES))
def test_import_weights_matches_reference_forward(name, tmp_path, capsys):
    source, rel, preset = CASES[name]
    out = tmp_path / "imported"
    rc = main(
        ["import-weights", "--from", source, str(FIX / rel), "--out", str(out), "--preset", preset]
    )
    assert rc == 0, capsys.readouterr().err
    info = json.loads((out / "model.json").read_text())
    assert info["preset"] == preset and info["source"] == source
    params = dc.load_params(out / "checkpoints")
    got = _forward(name, preset, params)
    ref = REF[f"{name}/out"]
    assert got.shape == ref.shape
    rel_err = np.max(np.abs(got - ref)) / np.max(np.abs(ref))
    assert rel_err < 1e-4, rel_err
    assert info["num_params"] == sum(np.size(p) for p in jax.tree.leaves(params))


def test_import_weights_wrong_preset_is_one_line_error(tmp_path, capsys):
    out = tmp_path / "imported"
    rc = main(
        [
            "import-weights",
            "--from",
            "adm",
            str(FIX / "adm_tiny.pt"),
            "--out",
            str(out),
            "--preset",
            "tiny_adm_sr",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert "adm_tiny.pt" in err and "input_blocks.0.0.weight" in err
    assert not out.exists()


def test_import_weights_missing_source_and_unknown_kind(tmp_path, capsys):
    rc = main(
        ["import-weights", "--from", "adm", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "o")]
    )
    assert rc == 2 and "nope.pt" in capsys.readouterr().err
    rc = main(
        ["import-weights", "--from", "sd", str(FIX / "adm_tiny.pt"), "--out", str(tmp_path / "o")]
    )
    assert rc == 2 and "adm, deepfloyd-if" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_if_sample_config_runs_the_method_on_the_if_cascade():
    from synthaug.pipeline import config as config_lib

    cfg = config_lib.load_config("paper/if_sample", "sample")
    base, sr = (dc.get_preset(cfg[s].preset) for s in ("base", "sr1"))
    # IF-I 64x64 text-to-image base and an IF-II 64->256 stage on the same T5-XXL width.
    assert (base.model.image_size, sr.model.image_size, sr.diffusion.lowres_size) == (64, 256, 64)
    assert base.model.text_dim == sr.model.text_dim == 4096
    assert not dc.is_super_resolution(base) and dc.is_super_resolution(sr)
    # Classifier-free guidance on both stages, IF's 77 tokens, class names as prompts.
    assert cfg.base.guidance > 1 and cfg.sr1.guidance > 1
    assert cfg.text.max_length == 77 and cfg.text.prompt_template == "{}"
    assert cfg.sr1.aug_level == 0.25 and cfg.per_class == 1200


@pytest.mark.parametrize(
    "preset, order, resize",
    [
        ("if_ii_l", "resize_then_noise", "bilinear_align_corners"),
        ("tiny_if_sr", "resize_then_noise", "bilinear_align_corners"),
        ("adm_sr_256", "resize_only", "bilinear"),
        ("imagen_sr_256", "noise_then_resize", "bilinear"),
    ],
)
def test_sample_conditions_each_sr_stage_as_its_preset_was_trained(preset, order, resize):
    """``sample`` builds each SR stage with its preset's diffusion.aug_order, aug_schedule and
    resize_method (diffusion-core's condition_lowres, the function finetune trains with)."""
    from synthaug.pipeline.sample import _pretrained_settings

    cfg = dc.get_preset(preset)
    settings = _pretrained_settings(cfg)
    assert settings["aug_order"] == order and settings["upsample_method"] == resize
    assert settings["aug_schedule"] == cfg.diffusion.aug_schedule
