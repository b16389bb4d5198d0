"""Skip markers shared by the CUDA test files: the extension may be missing (built
without CUDA) or present on a machine without a usable GPU."""

import pytest

try:
    import dlkern._C_cuda as C
except ModuleNotFoundError as exc:
    if exc.name != "dlkern._C_cuda":
        raise
    C = None

requires_module = pytest.mark.skipif(
    C is None, reason="dlkern._C_cuda is not built (CUDA was off or nvcc was not found); "
    "rebuild with DLKERN_CUDA=ON to test it")
HAS_GPU = C is not None and C.is_available()
requires_gpu = pytest.mark.skipif(
    not HAS_GPU, reason="needs a CUDA device: dlkern._C_cuda is missing or no usable "
    "CUDA device/driver is present")
no_gpu_only = pytest.mark.skipif(
    C is None or HAS_GPU, reason="checks the failure path of a build with CUDA on a machine without a GPU")


def argument_error_test(cases, ids=None):
    """A test over `cases` of (call, exception type, message pattern): each call must raise
    before any device work, so it runs wherever the module is built, GPU or not. A file
    names it ``test_..._argument_errors_before_device_work = argument_error_test([...])``."""

    @requires_module
    @pytest.mark.parametrize("call, exc, pattern", cases, ids=ids)
    def test(call, exc, pattern):
        with pytest.raises(exc, match=pattern):
            call()

    return test
