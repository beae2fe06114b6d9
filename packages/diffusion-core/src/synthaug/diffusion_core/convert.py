"""State dicts of the public pretrained models -> :class:`~synthaug.diffusion_core.adm.ADMUNet`
parameters.

* :func:`convert_adm_state_dict`: guided-diffusion's ``UNetModel`` / ``SuperResModel`` keys
  (``input_blocks.N.M...``), with its ``qkv`` convolution in either attention order;
* :func:`convert_if_state_dict`: diffusers' ``UNet2DConditionModel`` keys of DeepFloyd IF
  (``down_blocks.L.resnets.I...``).

Both take ``{name: numpy array}`` (read from the files by the caller, without executing any
pickled code) and are strict: every source tensor must be used, every parameter of the model
filled, every shape must agree; otherwise a one-line ``ValueError`` names the keys.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
from flax import traverse_util

from synthaug.diffusion_core.configs import _model_section, abstract_params

__all__ = ["convert_adm_state_dict", "convert_if_state_dict"]

Rule = tuple[str, Callable[..., np.ndarray], tuple[str, ...]]


def _limit(names, n: int = 8) -> str:
    names = sorted(names)
    more = f" (+{len(names) - n} more)" if len(names) > n else ""
    return ", ".join(names[:n]) + more


class _Mapper:
    """Collects ``target path -> (transform, source keys)`` rules and applies them strictly."""

    def __init__(self, source: Mapping[str, np.ndarray], what: str, config):
        self.src = {k: np.asarray(v) for k, v in source.items()}
        self.what = what
        self.expected = traverse_util.flatten_dict(dict(abstract_params(config)), sep="/")
        self.rules: dict[str, tuple[Callable[..., np.ndarray], tuple[str, ...]]] = {}

    def add(self, target: str, fn, *keys: str) -> None:
        self.rules[target] = (fn, keys)

    # Layer kinds -------------------------------------------------------------------------
    def dense(self, tgt: str, src: str) -> None:
        self.add(f"{tgt}/kernel", lambda w: w.T, f"{src}.weight")
        self.add(f"{tgt}/bias", lambda b: b, f"{src}.bias")

    def conv(self, tgt: str, src: str) -> None:
        self.add(f"{tgt}/kernel", lambda w: w.transpose(2, 3, 1, 0), f"{src}.weight")
        self.add(f"{tgt}/bias", lambda b: b, f"{src}.bias")

    def norm(self, tgt: str, src: str) -> None:
        self.add(f"{tgt}/scale", lambda w: w, f"{src}.weight")
        self.add(f"{tgt}/bias", lambda b: b, f"{src}.bias")

    def heads_dense(self, tgt: str, src: str, heads: int) -> None:
        """``Linear(D, H*d)`` -> ``DenseGeneral((H, d))``."""
        self.add(f"{tgt}/kernel", lambda w: w.T.reshape(w.shape[1], heads, -1), f"{src}.weight")
        self.add(f"{tgt}/bias", lambda b: b.reshape(heads, -1), f"{src}.bias")

    def proj_out(self, tgt: str, src: str, heads: int, conv1d: bool) -> None:
        def kernel(w):
            w = w[:, :, 0] if conv1d else w
            return w.T.reshape(heads, -1, w.shape[0])

        self.add(f"{tgt}/kernel", kernel, f"{src}.weight")
        self.add(f"{tgt}/bias", lambda b: b, f"{src}.bias")

    def res(self, tgt: str, src: str, names: dict[str, str]) -> None:
        self.norm(f"{tgt}/norm_0", f"{src}.{names['norm_0']}")
        self.conv(f"{tgt}/conv_0", f"{src}.{names['conv_0']}")
        self.dense(f"{tgt}/emb_proj", f"{src}.{names['emb_proj']}")
        self.norm(f"{tgt}/norm_1", f"{src}.{names['norm_1']}")
        self.conv(f"{tgt}/conv_1", f"{src}.{names['conv_1']}")
        if f"{tgt}/skip/kernel" in self.expected:
            self.conv(f"{tgt}/skip", f"{src}.{names['skip']}")

    # Application -------------------------------------------------------------------------
    def apply(self) -> dict:
        expected = self.expected
        missing = sorted(set(expected) - set(self.rules))
        extra = sorted(set(self.rules) - set(expected))
        if missing or extra:
            raise ValueError(
                f"{self.what}: the model's parameters and the conversion rules disagree: "
                f"no source for {_limit(missing) or '-'}; no parameter for {_limit(extra) or '-'}"
            )
        wanted = {k for _, keys in self.rules.values() for k in keys}
        absent = sorted(wanted - set(self.src))
        unused = sorted(set(self.src) - wanted)
        if absent or unused:
            raise ValueError(
                f"{self.what} does not match the model: missing tensors "
                f"{_limit(absent) or '-'}; unexpected tensors {_limit(unused) or '-'}"
            )
        out, bad = {}, []
        for target, (fn, keys) in self.rules.items():
            value = np.asarray(fn(*(self.src[k] for k in keys)), np.float32)
            shape = tuple(expected[target].shape)
            if value.shape != shape:
                bad.append(f"{'+'.join(keys)} -> {target}: {value.shape} vs {shape}")
                continue
            out[target] = value
        if bad:
            raise ValueError(f"{self.what}: shape mismatch: {'; '.join(bad[:6])}")
        return traverse_util.unflatten_dict(out, sep="/")


def _structure(m):
    mult = tuple(m.channel_mult)
    nrb = m.num_res_blocks
    nrb = (nrb,) * len(mult) if isinstance(nrb, int) else tuple(nrb)
    return mult, nrb


def _heads(m, channels: int, upsample: bool = False) -> int:
    if m.num_head_channels > 0:
        return channels // m.num_head_channels
    if upsample and m.get("num_heads_upsample", -1) > 0:
        return m.num_heads_upsample
    return m.num_heads


_ADM_RES = {
    "norm_0": "in_layers.0",
    "conv_0": "in_layers.2",
    "emb_proj": "emb_layers.1",
    "norm_1": "out_layers.0",
    "conv_1": "out_layers.3",
    "skip": "skip_connection",
}


def convert_adm_state_dict(
    state_dict: Mapping[str, np.ndarray], config, *, attention_order: str = "new"
) -> dict:
    """guided-diffusion ``UNetModel`` / ``SuperResModel`` weights -> ``ADMUNet`` params.

    Args:
      state_dict: ``{key: array}`` as ``torch.save(model.state_dict())`` holds it.
      config: the ``adm`` preset (full or model section) the weights belong to.
      attention_order: ``"new"`` (``use_new_attention_order=True``: the ``qkv`` rows are
        ``[q | k | v]``, each head-contiguous) or ``"legacy"`` (rows grouped per head,
        ``[q_h k_h v_h]``): the 64x64 model uses the new order, the upsamplers the legacy one.

    Raises:
      ValueError: a missing, unexpected or mis-shaped tensor (one line naming them).
    """
    if attention_order not in ("new", "legacy"):
        raise ValueError(f"attention_order must be 'new' or 'legacy', got {attention_order!r}")
    m = _model_section(config)
    if m.get("kind") != "adm" or m.get("text_dim") is not None:
        raise ValueError("ADM weights need a class- or unconditional adm preset (adm_64, ...)")
    mc = m.model_channels
    mult, nrb = _structure(m)
    mp = _Mapper(state_dict, "ADM state dict", config)

    def attn(tgt, src, ch, upsample=False):
        heads = _heads(m, ch, upsample)

        def qkv_kernel(w):
            w = w[:, :, 0]
            c = w.shape[1]
            if attention_order == "legacy":
                w = w.reshape(heads, 3, -1, c).transpose(1, 0, 2, 3)
            else:
                w = w.reshape(3, heads, -1, c)
            return w.transpose(3, 0, 1, 2)

        def qkv_bias(b):
            if attention_order == "legacy":
                return b.reshape(heads, 3, -1).transpose(1, 0, 2)
            return b.reshape(3, heads, -1)

        mp.norm(f"{tgt}/norm", f"{src}.norm")
        mp.add(f"{tgt}/qkv/kernel", qkv_kernel, f"{src}.qkv.weight")
        mp.add(f"{tgt}/qkv/bias", qkv_bias, f"{src}.qkv.bias")
        mp.proj_out(f"{tgt}/proj_out", f"{src}.proj_out", heads, conv1d=True)

    mp.dense("time_embed/dense_0", "time_embed.0")
    mp.dense("time_embed/dense_1", "time_embed.2")
    if m.get("num_classes") is not None:
        mp.add("label_emb/embedding", lambda w: w, "label_emb.weight")
    mp.conv("conv_in", "input_blocks.0.0")
    n, ds = 1, 1
    for level, mu in enumerate(mult):
        ch = int(mu * mc)
        for i in range(nrb[level]):
            mp.res(f"down_{level}_res_{i}", f"input_blocks.{n}.0", _ADM_RES)
            if ds in m.attention_resolutions:
                attn(f"down_{level}_attn_{i}", f"input_blocks.{n}.1", ch)
            n += 1
        if level != len(mult) - 1:
            mp.res(f"down_{level}_downsample", f"input_blocks.{n}.0", _ADM_RES)
            n += 1
            ds *= 2
    ch = int(mult[-1] * mc)
    mp.res("mid_res_0", "middle_block.0", _ADM_RES)
    attn("mid_attn", "middle_block.1", ch)
    mp.res("mid_res_1", "middle_block.2", _ADM_RES)
    n = 0
    for level, mu in reversed(list(enumerate(mult))):
        ch = int(mu * mc)
        for i in range(nrb[level] + 1):
            mp.res(f"up_{level}_res_{i}", f"output_blocks.{n}.0", _ADM_RES)
            k = 1
            if ds in m.attention_resolutions:
                attn(f"up_{level}_attn_{i}", f"output_blocks.{n}.1", ch, upsample=True)
                k = 2
            if level and i == nrb[level]:
                mp.res(f"up_{level}_upsample", f"output_blocks.{n}.{k}", _ADM_RES)
                ds //= 2
            n += 1
    mp.norm("norm_out", "out.0")
    mp.conv("conv_out", "out.2")
    return mp.apply()


_IF_RES = {
    "norm_0": "norm1",
    "conv_0": "conv1",
    "emb_proj": "time_emb_proj",
    "norm_1": "norm2",
    "conv_1": "conv2",
    "skip": "conv_shortcut",
}


def convert_if_state_dict(state_dict: Mapping[str, np.ndarray], config) -> dict:
    """DeepFloyd IF weights in diffusers' ``UNet2DConditionModel`` layout -> ``ADMUNet`` params.

    Args:
      state_dict: ``{key: array}`` from ``diffusion_pytorch_model*.safetensors`` / ``.bin``.
      config: the IF preset (full or model section).

    Raises:
      ValueError: a missing, unexpected or mis-shaped tensor (one line naming them).
    """
    m = _model_section(config)
    if m.get("kind") != "adm" or m.get("text_dim") is None:
        raise ValueError("IF weights need a text-conditioned adm preset (if_i_xl, tiny_if, ...)")
    mc = m.model_channels
    mult, nrb = _structure(m)
    levels = len(mult)
    mp = _Mapper(state_dict, "IF state dict", config)
    self_attn = m.get("self_attention", True)

    def attn(tgt, src, ch):
        heads = _heads(m, ch)
        mp.norm(f"{tgt}/norm", f"{src}.group_norm")
        if self_attn:

            def qkv_kernel(q, k, v):
                return np.stack([q.T, k.T, v.T], axis=1).reshape(q.shape[1], 3, heads, -1)

            def qkv_bias(q, k, v):
                return np.stack([q, k, v]).reshape(3, heads, -1)

            keys = (f"{src}.to_q", f"{src}.to_k", f"{src}.to_v")
            mp.add(f"{tgt}/qkv/kernel", qkv_kernel, *(f"{k}.weight" for k in keys))
            mp.add(f"{tgt}/qkv/bias", qkv_bias, *(f"{k}.bias" for k in keys))
        else:
            mp.heads_dense(f"{tgt}/q", f"{src}.to_q", heads)

        def kv_kernel(k, v):
            return np.stack([k.T, v.T], axis=1).reshape(k.shape[1], 2, heads, -1)

        def kv_bias(k, v):
            return np.stack([k, v]).reshape(2, heads, -1)

        kv = (f"{src}.add_k_proj", f"{src}.add_v_proj")
        mp.add(f"{tgt}/text_kv/kernel", kv_kernel, *(f"{k}.weight" for k in kv))
        mp.add(f"{tgt}/text_kv/bias", kv_bias, *(f"{k}.bias" for k in kv))
        mp.norm(f"{tgt}/text_norm", f"{src}.norm_cross")
        mp.proj_out(f"{tgt}/proj_out", f"{src}.to_out.0", heads, conv1d=False)

    mp.dense("time_embed/dense_0", "time_embedding.linear_1")
    mp.dense("time_embed/dense_1", "time_embedding.linear_2")
    if m.get("aug_embedding", False):
        mp.dense("aug_embed/dense_0", "class_embedding.linear_1")
        mp.dense("aug_embed/dense_1", "class_embedding.linear_2")
    if "text_proj/kernel" in mp.expected:
        mp.dense("text_proj", "encoder_hid_proj")
    pool_heads = m.text_pool_heads
    mp.norm("text_pool/norm_in", "add_embedding.norm1")
    mp.add("text_pool/positional_embedding", lambda w: w, "add_embedding.pool.positional_embedding")
    for p in ("q", "k", "v"):
        mp.heads_dense(f"text_pool/{p}", f"add_embedding.pool.{p}_proj", pool_heads)
    mp.dense("text_pool/proj", "add_embedding.proj")
    mp.norm("text_pool/norm_out", "add_embedding.norm2")
    mp.conv("conv_in", "conv_in")
    ds = 1
    for level, mu in enumerate(mult):
        ch = int(mu * mc)
        for i in range(nrb[level]):
            mp.res(f"down_{level}_res_{i}", f"down_blocks.{level}.resnets.{i}", _IF_RES)
            if ds in m.attention_resolutions:
                attn(f"down_{level}_attn_{i}", f"down_blocks.{level}.attentions.{i}", ch)
        if level != levels - 1:
            mp.res(f"down_{level}_downsample", f"down_blocks.{level}.downsamplers.0", _IF_RES)
            ds *= 2
    ch = int(mult[-1] * mc)
    mp.res("mid_res_0", "mid_block.resnets.0", _IF_RES)
    attn("mid_attn", "mid_block.attentions.0", ch)
    mp.res("mid_res_1", "mid_block.resnets.1", _IF_RES)
    for level, mu in reversed(list(enumerate(mult))):
        ch = int(mu * mc)
        j = levels - 1 - level
        for i in range(nrb[level] + 1):
            mp.res(f"up_{level}_res_{i}", f"up_blocks.{j}.resnets.{i}", _IF_RES)
            if ds in m.attention_resolutions:
                attn(f"up_{level}_attn_{i}", f"up_blocks.{j}.attentions.{i}", ch)
        if level:
            mp.res(f"up_{level}_upsample", f"up_blocks.{j}.upsamplers.0", _IF_RES)
            ds //= 2
    mp.norm("norm_out", "conv_norm_out")
    mp.conv("conv_out", "conv_out")
    return mp.apply()
