"""dlkern._C_cuda.adam_step / sgd_step (fused optimizer steps) against the optimizers'
CPU update (dlkern.optim's NumPy arithmetic, run on copies of the same arrays), and the
argument errors raised before any device work."""

import numpy as np
import pytest

from dlkern.optim.adam import _adam_update
from dlkern.optim.sgd import _sgd_update

from cuda_support import C, requires_gpu, requires_module

SHAPE = (37, 129)  # not a multiple of a block: the grid-stride tail is exercised


def _arrays(dtype, count, seed=0):
    r = np.random.default_rng(seed)
    return [r.standard_normal(SHAPE).astype(dtype) for _ in range(count)]


@requires_gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("decoupled, weight_decay, amsgrad, maximize", [
    (False, 0.0, False, False), (False, 0.1, True, False), (True, 0.05, False, True), (True, 0.01, True, False)])
def test_adam_step_matches_the_cpu_update(dtype, decoupled, weight_decay, amsgrad, maximize):
    p, g, m, v, vmax = _arrays(dtype, 5)
    v, vmax = np.abs(v), np.abs(vmax)
    dev = [C.from_numpy(a) for a in (p, g, m, v, vmax)]
    opts = dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=weight_decay,
                decoupled_weight_decay=decoupled, amsgrad=amsgrad, maximize=maximize)
    for step in (1, 2, 7):
        _adam_update(p, g, m, v, vmax, step=step, work=[np.empty_like(p), np.empty_like(p)], **opts)
        C.adam_step(dev[0], dev[1], dev[2], dev[3], dev[4] if amsgrad else None, step=step, **opts)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)
    for host, device in zip((p, m, v, vmax if amsgrad else None), dev[:1] + dev[2:]):
        if host is not None:
            np.testing.assert_allclose(device.numpy(), host, **tol)


@requires_gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("momentum, dampening, nesterov, weight_decay, maximize", [
    (0.0, 0.0, False, 0.0, False), (0.9, 0.0, True, 1e-3, False), (0.5, 0.1, False, 0.0, True)])
def test_sgd_step_matches_the_cpu_update(dtype, momentum, dampening, nesterov, weight_decay, maximize):
    p, g = _arrays(dtype, 2, seed=1)
    dp, dg = C.from_numpy(p), C.from_numpy(g)
    buf = None
    dbuf = C.empty(SHAPE, dtype) if momentum else None
    opts = dict(lr=0.05, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov,
                maximize=maximize)
    for step in range(3):
        buf = _sgd_update(p, g, buf, work=[np.empty_like(p), np.empty_like(p)], **opts)
        C.sgd_step(dp, dg, dbuf, first=step == 0, **opts)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dp.numpy(), p, **tol)
    if momentum:
        np.testing.assert_allclose(dbuf.numpy(), buf, **tol)


@requires_gpu
def test_fused_steps_check_their_arrays():
    p = C.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match=r"adam_step: grad has shape \(3, 4\) but param has shape \(4, 3\)"):
        C.adam_step(p, C.zeros((3, 4), np.float32), p, p, None, step=1, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                    weight_decay=0.0, decoupled_weight_decay=False, amsgrad=False, maximize=False)
    with pytest.raises(TypeError, match=r"adam_step: exp_avg has dtype float64 but param has dtype float32"):
        C.adam_step(p, p, C.zeros((4, 3), np.float64), p, None, step=1, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                    weight_decay=0.0, decoupled_weight_decay=False, amsgrad=False, maximize=False)
    with pytest.raises(ValueError, match=r"adam_step: amsgrad=True needs max_exp_avg_sq"):
        C.adam_step(p, p, p, p, None, step=1, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                    weight_decay=0.0, decoupled_weight_decay=False, amsgrad=True, maximize=False)
    with pytest.raises(ValueError, match=r"adam_step: step counts from 1, got 0"):
        C.adam_step(p, p, p, p, None, step=0, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                    weight_decay=0.0, decoupled_weight_decay=False, amsgrad=False, maximize=False)
    with pytest.raises(ValueError, match=r"sgd_step: grad must be contiguous"):
        C.sgd_step(p, C.zeros((3, 4), np.float32).T, None, lr=0.1, momentum=0.0, dampening=0.0, weight_decay=0.0,
                   nesterov=False, maximize=False, first=False)
    with pytest.raises(ValueError, match=r"sgd_step: momentum != 0 needs momentum_buffer"):
        C.sgd_step(p, p, None, lr=0.1, momentum=0.9, dampening=0.0, weight_decay=0.0, nesterov=False,
                   maximize=False, first=True)


@requires_module
def test_fused_steps_refuse_host_arrays_before_device_work():
    a = np.zeros(3, np.float32)
    with pytest.raises(TypeError, match=r"adam_step: param is a numpy.ndarray"):
        C.adam_step(a, a, a, a, None, step=1, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
                    decoupled_weight_decay=False, amsgrad=False, maximize=False)
    with pytest.raises(TypeError, match=r"sgd_step: param is a numpy.ndarray"):
        C.sgd_step(a, a, None, lr=0.1, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
                   maximize=False, first=False)
