"""``synthaug plan``: per-device memory of a training config, on a small simulated mesh."""

import json
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from synthaug.pipeline import config as config_lib
from synthaug.pipeline import plan as plan_lib
from synthaug.pipeline.cli import main
from synthaug.pipeline.errors import ConfigError

# Conv kernels split over fsdp along their output channels.
RULES = (("conv[^/]*/kernel$", (None, None, None, "fsdp")),)


def _classifier_cfg(mesh=None, rules=()):
    cfg = config_lib.load_config("demo/classifier", "train-classifier", [])
    cfg.unlock()
    if mesh is not None:
        cfg.mesh = dict(mesh)
        cfg.sharding = {"rules": rules}
    return cfg


def test_parse_hardware():
    assert plan_lib.parse_hardware("256 TPU-v4 chips (v4-512), batch 2048") == (256, 32, "tpu-v4")
    assert plan_lib.parse_hardware("16 x H100 GPUs") == (16, 80, "h100")
    assert plan_lib.parse_hardware("CPU (2 cores)") == (None, None, None)


def test_state_bytes_follow_the_mesh_and_rules():
    # Independent count: every leaf's bytes, conv kernels divided by the fsdp size.
    cfg = _classifier_cfg({"data": -1, "fsdp": 2, "model": 1}, RULES)
    result = plan_lib.plan(cfg, devices=4, device_memory_gib=1, compile_step=False)
    assert result["mesh"] == {"data": 2, "fsdp": 2, "model": 1}
    model, recipe, batch = plan_lib._classifier_parts(cfg)
    state, _ = plan_lib._classifier_shapes(model, recipe, 1)
    from synthaug.tpu_launch import param_paths

    expected = 0
    for path, leaf in zip(param_paths(state.params), jax.tree.leaves(state.params), strict=True):
        nbytes = int(np.prod(leaf.shape)) * 4
        expected += nbytes // 2 if path.endswith("kernel") and "conv" in path else nbytes
    stats = sum(int(np.prod(x.shape)) * 4 for x in jax.tree.leaves(state.batch_stats))
    assert result["bytes"]["params"] == expected + stats
    replicated = plan_lib.plan(_classifier_cfg(), devices=4, compile_step=False)
    assert result["bytes"]["params"] < replicated["bytes"]["params"]
    assert result["per_device_batch"] == batch // 4
    assert result["fits"] is None  # temporaries not compiled


def test_bad_mesh_and_rules_are_config_errors():
    with pytest.raises(ConfigError, match="config.mesh:.*3 devices"):
        plan_lib.plan(_classifier_cfg({"data": 2, "fsdp": 1}), devices=3, compile_step=False)
    bad = (("layer4_0/conv1/kernel$", ("fsdp",)),)  # 3 is not divisible by 2
    with pytest.raises(ConfigError, match="sharding.rules:.*layer4_0/conv1/kernel"):
        plan_lib.plan(_classifier_cfg({"data": 1, "fsdp": 2}, bad), devices=2, compile_step=False)


def test_plan_rejects_other_stages_in_one_line(capsys):
    assert main(["plan", "--config", "demo/sample"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "plan covers finetune and train-classifier" in err[0]


def test_plan_compiles_the_step_on_a_simulated_fsdp_mesh():
    # A fresh process simulates the two CPU devices of the fsdp axis (data -> 1).
    code = textwrap.dedent(
        f"""
        import json, sys
        from synthaug.pipeline import config as config_lib, plan as plan_lib
        cfg = config_lib.load_config("demo/classifier", "train-classifier", [])
        cfg.unlock()
        cfg.mesh = {{"data": -1, "fsdp": 2, "model": 1}}
        cfg.sharding = {{"rules": {RULES!r}}}
        r = plan_lib.plan(cfg, devices=8, device_memory_gib=0.02)
        print(json.dumps(r))
        print(plan_lib.format_plan(r, source="demo/classifier"))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    first, _, text = proc.stdout.partition("\n")
    r = json.loads(first)
    assert r["mesh"] == {"data": 4, "fsdp": 2, "model": 1}
    assert r["per_device_batch"] == 64 // 8
    assert r["bytes"]["temporaries"] > 0
    assert (
        "simulated mesh {'data': 1, 'fsdp': 2, 'model': 1} of 2 CPU device(s), batch 16"
        in (r["temporaries_note"])
    )
    b = r["bytes"]
    assert b["total"] == b["params"] + b["optimizer"] + b["temporaries"]
    # 0.02 GiB is less than the total: the plan says it does not fit.
    assert r["fits"] is (b["total"] <= 0.02 * 2**30)
    assert "fits: NO" in text if not r["fits"] else "fits: yes" in text
    assert "per device:" in text and "step temporaries" in text


def test_plan_compiles_the_finetune_step_and_grad_accumulation_shrinks_it(one_level_unet):
    # The U-Net step as `train` compiles it on a simulated fsdp=2 mesh; two micro-batches
    # hold half the activations at a time.
    code = textwrap.dedent(
        """
        import json, sys
        from synthaug.pipeline import config as config_lib, plan as plan_lib
        from synthaug.pipeline.configs.paper._mesh import UNET_FSDP_RULES
        out = {}
        for accum in (1, 2):
            cfg = config_lib.load_config(
                "demo/finetune:base", "finetune",
                [f"train.grad_accum_steps={accum}", "train.batch_size=64", *sys.argv[1:]],
            )
            cfg.unlock()
            cfg.mesh = {"data": -1, "fsdp": 2, "model": 1}
            cfg.sharding = {"rules": UNET_FSDP_RULES}
            out[accum] = plan_lib.plan(cfg, devices=4, device_memory_gib=1)
        print(json.dumps(out))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *one_level_unet], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout.splitlines()[-1])
    one, two = r["1"], r["2"]
    assert (
        "simulated mesh {'data': 1, 'fsdp': 2, 'model': 1} of 2 CPU device(s), batch 32"
        in (one["temporaries_note"])
    )
    assert one["bytes"]["params"] == two["bytes"]["params"] > 0
    assert 0 < two["bytes"]["temporaries"] < 0.7 * one["bytes"]["temporaries"]
