"""The NumPy-style methods dlkern.device_array installs on CUDA device arrays, against
NumPy itself: views from basic indexing, integer-array indexing, reductions over any
axes, dtype promotion, in-place operators, assignment. Runs on the host twin of
dlkern._C_cuda everywhere and on the real module where a GPU is present."""

import numpy as np
import pytest

from dlkern.device import CUDADevice
import dlkern

import host_cuda
from cuda_support import HAS_GPU


@pytest.fixture(params=[pytest.param("twin", id="host-twin"),
                        pytest.param("gpu", id="gpu", marks=pytest.mark.skipif(
                            not HAS_GPU, reason="needs a CUDA device"))])
def dev(request):
    return CUDADevice(0, module=host_cuda) if request.param == "twin" else dlkern.device("cuda")


A = np.arange(2 * 3 * 4 * 5, dtype=np.float64).reshape(2, 3, 4, 5) * 0.5 - 7


@pytest.mark.parametrize("index", [
    0, -1, (1, 2), (slice(None), 1), (Ellipsis, 3), (1, Ellipsis, slice(1, 4, 2)), (None, 0, None),
    (slice(None, None, 2), slice(1, None), None, slice(0, 5, 3)), (slice(3, 1),), (0, 2, 3, 4), (Ellipsis,),
])
def test_basic_indexing_gives_the_numpy_view(dev, index):
    x = dev.from_host(A)
    got = x[index]
    np.testing.assert_array_equal(got.numpy(), A[index])
    if got.size:
        got[...] = -1.0  # a view: writes reach x
        want = A.copy()
        want[index] = -1.0
        np.testing.assert_array_equal(x.numpy(), want)


@pytest.mark.parametrize("index", [
    np.array([1, 0, -1]), (slice(None), np.array([[1, 0], [2, 2]])), (np.array([1, 0, 1]), np.array([0, 2, -1])),
])
def test_integer_array_indexing(dev, index):
    x = dev.from_host(A)
    np.testing.assert_array_equal(x[index].numpy(), A[index])


def test_assignment_through_integer_arrays_over_every_axis(dev):
    x = dev.zeros((4, 3), np.float64)
    rows, cols = np.array([0, 1, 3]), np.array([2, 0, 1])
    x[dev.from_host(rows), dev.from_host(cols)] = dev.from_host(np.array([1.0, 2.0, 3.0]))
    want = np.zeros((4, 3))
    want[rows, cols] = [1.0, 2.0, 3.0]
    np.testing.assert_array_equal(x.numpy(), want)
    with pytest.raises(IndexError):
        dev.from_host(A)[(0, 0, 0, 0, 0)]


@pytest.mark.parametrize("axis", [None, 0, -1, (0, 2), (1, 3), (0, 1, 2, 3)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions_over_any_axes(dev, axis, keepdims):
    x = dev.from_host(A)
    for method in ("sum", "mean", "max", "min", "var"):
        got = getattr(x, method)(axis=axis, keepdims=keepdims).numpy()
        np.testing.assert_allclose(got, getattr(A, method)(axis=axis, keepdims=keepdims), rtol=1e-12,
                                   err_msg=method)
    np.testing.assert_array_equal(x.argmax(axis=1).numpy(), A.argmax(axis=1))
    assert (x > 0).sum().item() == (A > 0).sum()


def test_operators_promote_like_numpy(dev):
    x = dev.from_host(A[0, 0])
    m = x > 0
    assert m.dtype == np.bool_
    for got, want in ((x * m, A[0, 0] * (A[0, 0] > 0)), (m * 2.5, (A[0, 0] > 0) * 2.5),
                      (2.0 - x, 2.0 - A[0, 0]), (x ** 2, A[0, 0] ** 2), (-x, -A[0, 0]), (abs(x), np.abs(A[0, 0])),
                      (x / dev.from_host(np.arange(1, 6)), A[0, 0] / np.arange(1, 6)), (~m, ~(A[0, 0] > 0))):
        assert got.dtype == want.dtype
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)


def test_in_place_operators_write_into_self_and_views(dev):
    x = dev.from_host(A.copy())
    alias = x
    x += 1.0
    x[0] *= 2.0
    x[:, 1:] -= dev.from_host(np.ones((3 - 1, 4, 5)))
    want = A + 1.0
    want[0] *= 2.0
    want[:, 1:] -= 1.0
    assert alias is x
    np.testing.assert_array_equal(x.numpy(), want)


def test_shape_methods(dev):
    x = dev.from_host(A)
    np.testing.assert_array_equal(x.transpose().numpy(), A.transpose())
    np.testing.assert_array_equal(x.transpose(2, 0, 3, 1).numpy(), A.transpose(2, 0, 3, 1))
    np.testing.assert_array_equal(x.swapaxes(1, -1).numpy(), A.swapaxes(1, -1))
    np.testing.assert_array_equal(x.swapaxes(1, -1).reshape(2, -1).numpy(), A.swapaxes(1, -1).reshape(2, -1))
    np.testing.assert_array_equal(x[:, :1].squeeze(1).numpy(), A[:, :1].squeeze(1))
    np.testing.assert_array_equal(x.T.flatten().numpy(), A.T.flatten())
    np.testing.assert_array_equal(x.astype(np.float32).numpy(), A.astype(np.float32))
    assert x[0, 0, 0, 0].item() == A[0, 0, 0, 0] and x[1, 2].tolist() == A[1, 2].tolist()


def test_host_arrays_are_refused(dev):
    x = dev.from_host(A)
    with pytest.raises(TypeError, match="devices cannot be mixed"):
        x + np.ones(5)
    with pytest.raises(TypeError):
        np.asarray(x)


def test_install_gives_a_class_without_the_mixin_every_method():
    """pybind11 classes cannot derive from a Python class, so dlkern._C_cuda.DeviceArray gets
    DeviceArrayMethods' methods from install(); a class of the twin's binding surface that
    does not derive from it stands in for the pybind11 class."""
    import types
    from dlkern.device_array import DeviceArrayMethods, install
    bound = type("DeviceArray", (host_cuda._DeviceArrayBinding,), {"__module__": "host_cuda"})
    assert bound.__hash__ is not None and bound.reshape is host_cuda._DeviceArrayBinding.reshape
    install(types.SimpleNamespace(DeviceArray=bound))
    for name, value in vars(DeviceArrayMethods).items():
        if name not in ("__module__", "__qualname__", "__doc__", "__slots__"):
            assert bound.__dict__[name] is value, name
    assert bound.__hash__ is None  # == is elementwise
    install(types.SimpleNamespace(DeviceArray=host_cuda.DeviceArray))  # derives from it: nothing to add
    assert "sum" not in host_cuda.DeviceArray.__dict__
