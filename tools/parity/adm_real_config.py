#!/usr/bin/env python3
"""ADMUNet against guided-diffusion at the real ADM configs, with random weights.

    FIXTURE_VENV/bin/python tools/parity/adm_real_config.py --stage write --dir /tmp/admp
    .venv/bin/python tools/parity/adm_real_config.py --stage check --dir /tmp/admp

The first stage (fixture venv: torch, guided-diffusion-sdk) builds guided-diffusion's
64x64 class-conditional model (and, with ``--sr``, the 64->256 upsampler) from their release
flags, draws every parameter from N(0, 0.02**2) with a fixed seed, saves the state dict with
``torch.save`` and the reference output on a fixed input. The second stage (the synthaug venv)
imports the file through ``synthaug import-weights`` and prints the maximum relative
difference of ADMUNet's output. Too slow for the unit tests on 2 CPU cores; run by hand.
"""

from __future__ import annotations

import argparse
import pathlib

import numpy as np


def write(d: pathlib.Path, sr: bool) -> None:
    import torch
    from guided_diffusion.script_util import create_model, sr_create_model

    torch.manual_seed(0)
    if sr:
        model = sr_create_model(
            256,
            64,
            192,
            2,
            learn_sigma=True,
            class_cond=True,
            use_checkpoint=False,
            attention_resolutions="32,16,8",
            num_heads=4,
            num_head_channels=-1,
            num_heads_upsample=-1,
            use_scale_shift_norm=True,
            dropout=0.0,
            resblock_updown=True,
            use_fp16=False,
        )
        size = 256
    else:
        model = create_model(
            64,
            192,
            3,
            channel_mult="",
            learn_sigma=True,
            class_cond=True,
            use_checkpoint=False,
            attention_resolutions="32,16,8",
            num_heads=4,
            num_head_channels=64,
            num_heads_upsample=-1,
            use_scale_shift_norm=True,
            dropout=0.0,
            resblock_updown=True,
            use_fp16=False,
            use_new_attention_order=True,
        )
        size = 64
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
    model.eval()
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 3, size, size)).astype(np.float32)
    t = np.array([417])
    y = np.array([281])
    kw = {"y": torch.tensor(y)}
    if sr:
        low = rng.standard_normal((1, 3, 64, 64)).astype(np.float32)
        kw["low_res"] = torch.tensor(low)
    with torch.no_grad():
        out = model(torch.tensor(x), torch.tensor(t), **kw).numpy()
    torch.save(model.state_dict(), d / "model.pt")
    np.savez(d / "io.npz", x=x, t=t, y=y, out=out, **({"low": low} if sr else {}))


def check(d: pathlib.Path, sr: bool) -> None:
    from synthaug import diffusion_core as dc
    from synthaug.pipeline.pretrained import import_weights

    preset = "adm_sr_256" if sr else "adm_64"
    import_weights("adm", d / "model.pt", d / "imported", preset=preset)
    params = dc.load_params(d / "imported" / "checkpoints")
    io = np.load(d / "io.npz")
    model = dc.make_model(dc.get_preset(preset))
    x = io["x"].transpose(0, 2, 3, 1)
    kw = {"labels": io["y"]}
    if sr:
        kw["lowres"] = dc.upsample_lowres(io["low"].transpose(0, 2, 3, 1), size=256)
    got = np.asarray(model.apply({"params": params}, x, (io["t"] + 1) / 1000.0, **kw))
    ref = io["out"].transpose(0, 2, 3, 1)
    print(
        f"{preset}: max |ours - reference| / max |reference| = "
        f"{np.abs(got - ref).max() / np.abs(ref).max():.3g}"
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--stage", choices=("write", "check"), required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--sr", action="store_true")
    a = ap.parse_args()
    d = pathlib.Path(a.dir)
    d.mkdir(parents=True, exist_ok=True)
    (write if a.stage == "write" else check)(d, a.sr)
