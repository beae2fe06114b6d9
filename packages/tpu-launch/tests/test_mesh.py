import jax
import pytest

from synthaug.tpu_launch import DEFAULT_AXES, MeshShapeError, make_mesh, resolve_mesh_shape


def test_resolve_fills_the_rest():
    assert resolve_mesh_shape({"data": -1, "fsdp": 1, "model": 2}, num_devices=8) == {
        "data": 4,
        "fsdp": 1,
        "model": 2,
    }
    assert resolve_mesh_shape({"data": 2, "model": -1}, num_devices=256) == {
        "data": 2,
        "model": 128,
    }
    assert resolve_mesh_shape({"data": 4, "model": 2}, num_devices=8) == {"data": 4, "model": 2}
    # Order of the axes is kept.
    assert list(resolve_mesh_shape({"model": 2, "data": -1}, num_devices=4)) == ["model", "data"]


def test_axes_that_do_not_fit_name_the_device_count():
    with pytest.raises(MeshShapeError, match="does not divide 6"):
        resolve_mesh_shape({"data": -1, "model": 4}, num_devices=6)
    with pytest.raises(MeshShapeError, match="need 8 devices but there are 4 devices"):
        resolve_mesh_shape({"data": 4, "model": 2}, num_devices=4)
    with pytest.raises(MeshShapeError, match="at most one mesh axis may be -1"):
        resolve_mesh_shape({"data": -1, "model": -1}, num_devices=4)
    with pytest.raises(MeshShapeError, match="positive size or -1"):
        resolve_mesh_shape({"data": 0}, num_devices=4)
    with pytest.raises(MeshShapeError, match="integer size"):
        resolve_mesh_shape({"data": 2.0}, num_devices=4)
    with pytest.raises(MeshShapeError, match="at least one axis"):
        resolve_mesh_shape({}, num_devices=4)


def test_make_mesh_on_cpu_devices():
    assert jax.device_count() == 4
    mesh = make_mesh()
    assert mesh.axis_names == tuple(DEFAULT_AXES)
    assert dict(mesh.shape) == {"data": 4, "fsdp": 1, "model": 1}
    mesh = make_mesh({"data": -1, "model": 2})
    assert dict(mesh.shape) == {"data": 2, "model": 2}
    assert sorted(d.id for d in mesh.devices.flat) == sorted(d.id for d in jax.devices())
    one = make_mesh({"data": -1}, devices=jax.devices()[:1])
    assert one.devices.size == 1
    with pytest.raises(MeshShapeError, match="there are 4 devices"):
        make_mesh({"data": 8})
