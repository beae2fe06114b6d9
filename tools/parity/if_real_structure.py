#!/usr/bin/env python3
"""ADMUNet against diffusers' UNet2DConditionModel at DeepFloyd IF-I's real structure.

    FIXTURE_VENV/bin/python tools/parity/if_real_structure.py --stage write --dir /tmp/ifp
    .venv/bin/python tools/parity/if_real_structure.py --stage check --dir /tmp/ifp

IF-I's configuration as diffusers' ``scripts/convert_if.py`` builds it (64×64, channel_mult
1,2,3,4, three res blocks per level, attention at 32/16/8 with 64-channel heads, T5-XXL
4096-wide tokens projected to ``4 * model_channels``, 64 pooling heads, GELU) at
``model_channels`` 192 (``--mc``; IF-I-XL's 704 needs about 40 GB of host memory for both
frameworks). Random weights N(0, 0.02**2); 77 random tokens; the first stage saves the model
with ``save_pretrained`` and the reference output, the second imports the directory through
``synthaug import-weights`` (preset ``if_i_xl`` with ``model.model_channels`` changed) and
prints the maximum relative difference. Run by hand (too slow for the unit tests).
"""

from __future__ import annotations

import argparse
import pathlib

import numpy as np


def write(d: pathlib.Path, mc: int) -> None:
    import sys

    import torch
    from diffusers import UNet2DConditionModel

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "fixtures"))
    from make_pretrained_reference import if_stage_1_config

    torch.manual_seed(0)
    model = UNet2DConditionModel(**if_stage_1_config(mc)).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 3, 64, 64)).astype(np.float32)
    text = rng.standard_normal((1, 77, 4096)).astype(np.float32)
    t = np.array([417])
    with torch.no_grad():
        out = model(torch.tensor(x), torch.tensor(t), encoder_hidden_states=torch.tensor(text))
    model.save_pretrained(d / "unet", safe_serialization=True)
    np.savez(d / "io.npz", x=x, t=t, text=text, out=out.sample.numpy(), mc=mc)


def check(d: pathlib.Path) -> None:
    from synthaug import diffusion_core as dc
    from synthaug.diffusion_core.convert import convert_if_state_dict
    from synthaug.pipeline.pretrained import read_weights

    io = np.load(d / "io.npz")
    cfg = dc.get_preset("if_i_xl")
    mc = int(io["mc"])
    with cfg.unlocked():
        cfg.model.model_channels = mc
        cfg.model.time_embed_dim = 4 * mc
        cfg.model.text_channels = 4 * mc
    params = convert_if_state_dict(read_weights(d / "unet"), cfg)
    model = dc.make_model(cfg)
    got = np.asarray(
        model.apply(
            {"params": params}, io["x"].transpose(0, 2, 3, 1), (io["t"] + 1) / 1000.0, io["text"]
        )
    )
    ref = io["out"].transpose(0, 2, 3, 1)
    print(
        f"IF-I structure, model_channels {mc} ({dc.param_count(cfg):,} parameters): "
        f"max |ours - reference| / max |reference| = {np.abs(got - ref).max() / np.abs(ref).max():.3g}"
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--stage", choices=("write", "check"), required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--mc", type=int, default=192)
    a = ap.parse_args()
    d = pathlib.Path(a.dir)
    d.mkdir(parents=True, exist_ok=True)
    write(d, a.mc) if a.stage == "write" else check(d)
