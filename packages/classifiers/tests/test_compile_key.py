"""Fits that differ only in host-side recipe keys (a seed sweep) share compiled steps."""

from synthaug import classifiers as cl
from synthaug.classifiers.state import compiled_config


def test_seed_and_checkpoint_keys_do_not_change_the_compiled_config():
    a = cl.demo_recipe("resnet_tiny", batch_size=16, epochs=1, image_size=16)
    b = cl.demo_recipe("resnet_tiny", batch_size=16, epochs=1, image_size=16)
    with b.unlocked():
        b.seed = 7
        b.checkpoint_every_steps = 3
    assert hash(compiled_config(a)) == hash(compiled_config(b))
    assert compiled_config(a) == compiled_config(b)
    with b.unlocked():
        b.base_lr = 0.5  # a compiled value: a different program
    assert compiled_config(a) != compiled_config(b)
    assert compiled_config(b).base_lr == 0.5 and b.seed == 7  # the input is not changed
