"""Benchmark: T5 v1.1 encoder throughput, Flax (jitted) against Hugging Face PyTorch.

A random T5 v1.1 "small"-sized encoder (d_model 512, 8 layers, 6 heads, d_ff 1024, a
reduced 4096-token vocabulary to keep the file small) is built with ``transformers``,
saved as safetensors, and loaded through ``load_hf_checkpoint``; both implementations
encode the same padded batch of token ids in float32 on the CPU. The Flax function is the
one ``make_encode_fn`` returns (compiled once in the warm-up); the peer is
``T5EncoderModel`` under ``torch.inference_mode``, timed with its default thread count and
with one thread, the faster being the peer value (``--quick``: one thread only). The largest output difference is reported
in the notes as a parity check.

    /work/toolsenv/bin/python tools/bench/run.py --only text_encoder --quick
"""

from __future__ import annotations

import pathlib
import sys
import tempfile

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from harness import Result, block, measure  # noqa: E402


def run(quick: bool) -> list[Result]:
    import torch
    import transformers

    from synthaug.text_encoder import load_hf_checkpoint, make_encode_fn

    batch, length = (4, 32) if quick else (16, 128)
    torch.manual_seed(0)
    cfg = transformers.T5Config(
        vocab_size=4096,
        d_model=512,
        d_kv=64,
        num_heads=6,
        d_ff=1024,
        num_layers=8,
        feed_forward_proj="gated-gelu",
        dropout_rate=0.0,
    )
    ref = transformers.T5EncoderModel(cfg).eval()
    rng = np.random.default_rng(0)
    ids = rng.integers(2, cfg.vocab_size, (batch, length)).astype(np.int32)
    mask = np.zeros((batch, length), bool)
    for b in range(batch):
        n = int(rng.integers(length // 4, length + 1))
        ids[b, n - 1] = 1
        ids[b, n:] = 0
        mask[b, :n] = True

    with tempfile.TemporaryDirectory() as tmp:
        ref.save_pretrained(tmp, safe_serialization=True)
        config, params = load_hf_checkpoint(tmp)
    encode = make_encode_fn(config, params)

    t_ids = torch.from_numpy(ids.astype(np.int64))
    t_mask = torch.from_numpy(mask.astype(np.int64))

    def flax_call():
        return block(encode(ids, mask))

    def torch_call():
        with torch.inference_mode():
            return ref(input_ids=t_ids, attention_mask=t_mask).last_hidden_state

    diff = float(np.abs(np.asarray(flax_call()) - torch_call().numpy()).max())
    runs = 5 if quick else 10
    t_flax = measure(flax_call, warmup=2, runs=runs)
    # On a shared machine PyTorch's intra-op threads can contend badly; the peer is timed
    # with its default thread count and with one thread, and the faster is reported.
    default_threads = torch.get_num_threads()
    peer_timings = {}
    # (quick: one thread only, to stay short)
    for threads in [1] if quick else sorted({default_threads, 1}, reverse=True):
        torch.set_num_threads(threads)
        peer_timings[threads] = measure(torch_call, warmup=1, runs=runs)
    torch.set_num_threads(default_threads)
    best = min(peer_timings, key=lambda k: peer_timings[k].median)
    t_torch = peer_timings[best]
    peer_note = ", ".join(
        f"{k} thread(s): {batch / t.median:.3g} seq/s" for k, t in peer_timings.items()
    )
    seqs = lambda t: batch / t.median
    return [
        Result(
            name="text_encoder.t5_small_encode",
            metric=f"sequences/s (batch {batch} x {length} tokens, float32, CPU)",
            value=seqs(t_flax),
            unit="seq/s",
            peer="transformers T5EncoderModel (PyTorch)",
            peer_value=seqs(t_torch),
            ratio=seqs(t_flax) / seqs(t_torch),
            timing=t_flax,
            peer_timing=t_torch,
            notes=f"PyTorch {peer_note} (best reported); max |flax - torch| = {diff:.2e}",
        )
    ]
