"""dlkern.utils.summary and count_parameters: FLOPs, MACs and parameter counts against
counts derived by hand here, and parameter counts against the same architectures in
PyTorch."""

import numpy as np
import pytest

import dlkern
from dlkern import nn
from dlkern.models import GPT, MLP, LeNet5
from dlkern.utils import count_parameters, summary


def _row(s, name):
    return next(r for r in s.rows if r.name == name)


def _check_totals(s):
    """The totals agree with the rows: own parameters and own MACs sum to them."""
    assert sum(r.own_params for r in s.rows) == s.total_params
    assert sum(r.own_macs for r in s.rows) == s.total_macs == s.rows[0].macs
    assert s.total_flops == 2 * s.total_macs
    assert s.trainable_params + s.non_trainable_params == s.total_params


# ---------------------------------------------------------------------- MLP

def test_mlp_counts():
    batch = 3
    s = summary(MLP(784, (256, 256), 10), input_size=(batch, 784))
    # params: 784*256 + 256 = 200,960; 256*256 + 256 = 65,792; 256*10 + 10 = 2,570 -> 269,322
    assert s.total_params == s.trainable_params == 269_322
    assert count_parameters(MLP(784, (256, 256), 10)) == 269_322
    # MACs per sample: 784*256 + 256*256 + 256*10 = 200,704 + 65,536 + 2,560 = 268,800
    assert s.total_macs == batch * 268_800
    assert s.total_flops == batch * 537_600           # 2 FLOPs per multiply-add, biases not counted
    assert _row(s, "layers.1").macs == batch * 200_704 and _row(s, "layers.1").params == 200_960
    assert _row(s, "layers.2").macs == 0 and _row(s, "layers.2").params == 0     # ReLU: a row, no count
    assert _row(s, "layers.5").output_shape == (batch, 10)
    # activation bytes (float32): Flatten 784, ReLU/Linear 4 x 256, last Linear 10 -> per sample
    # (784 + 4 * 256 + 10) * 4 bytes; the Sequential's and MLP's output is the last Linear's.
    assert s.activation_bytes == batch * (784 + 4 * 256 + 10) * 4
    assert s.param_bytes == 269_322 * 4
    assert s.input_bytes == batch * 784 * 4
    _check_totals(s)
    text = str(s)
    for piece in ("MLP", "Linear", "ReLU", "[3, 256]", "269,322", "Total FLOPs: 1,612,800"):
        assert piece in text


# ---------------------------------------------------------------------- LeNet-5

def test_lenet_counts():
    s = summary(LeNet5(1, 10, input_size=28), input_size=(2, 1, 28, 28))
    # conv1 1->6 5x5 pad 2: out 6x28x28; MACs = 6*28*28 * 1*25 = 117,600; params 6*25 + 6 = 156
    # pool -> 6x14x14; conv2 6->16 5x5: out 16x10x10; MACs = 16*100 * 6*25 = 240,000; params 2,416
    # pool -> 16x5x5 = 400; fc 400*120 = 48,000 (48,120 params), 120*84 = 10,080 (10,164),
    # 84*10 = 840 (850). MACs per sample: 117,600 + 240,000 + 48,000 + 10,080 + 840 = 416,520
    assert s.total_params == 156 + 2_416 + 48_120 + 10_164 + 850 == 61_706
    assert s.total_macs == 2 * 416_520
    assert _row(s, "features.0").macs == 2 * 117_600
    assert _row(s, "features.3").macs == 2 * 240_000
    assert _row(s, "features.3").output_shape == (2, 16, 10, 10)
    assert _row(s, "features.5").output_shape == (2, 16, 5, 5)
    assert _row(s, "features").params == 156 + 2_416
    assert _row(s, "classifier.0").type == "Flatten"
    _check_totals(s)


def _torch_params(module):
    return sum(p.numel() for p in module.parameters())


def test_param_counts_match_torch():
    torch = pytest.importorskip("torch")
    tn = torch.nn
    mlp = tn.Sequential(tn.Flatten(), tn.Linear(784, 256), tn.ReLU(), tn.Linear(256, 256), tn.ReLU(),
                        tn.Linear(256, 10))
    assert count_parameters(MLP(784, (256, 256), 10)) == _torch_params(mlp)
    lenet = tn.Sequential(tn.Conv2d(1, 6, 5, padding=2), tn.ReLU(), tn.MaxPool2d(2), tn.Conv2d(6, 16, 5),
                          tn.ReLU(), tn.MaxPool2d(2), tn.Flatten(), tn.Linear(400, 120), tn.ReLU(),
                          tn.Linear(120, 84), tn.ReLU(), tn.Linear(84, 10))
    assert summary(LeNet5(), input_size=(1, 1, 28, 28)).total_params == _torch_params(lenet)
    block_dl, block_t = BasicBlock(8), _torch_block(torch, 8)
    assert summary(block_dl, (1, 8, 6, 6)).total_params == _torch_params(block_t)
    assert count_parameters(block_dl, trainable_only=True) == sum(
        p.numel() for p in block_t.parameters() if p.requires_grad)


# ---------------------------------------------------------------------- ResNet basic block

class BasicBlock(nn.Module):
    """conv3x3 - bn - relu - conv3x3 - bn, plus the identity, then relu."""

    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + x)


def _torch_block(torch, c):
    tn = torch.nn
    return tn.Sequential(tn.Conv2d(c, c, 3, padding=1, bias=False), tn.BatchNorm2d(c), tn.ReLU(),
                         tn.Conv2d(c, c, 3, padding=1, bias=False), tn.BatchNorm2d(c))


def test_resnet_basic_block_counts():
    c, hw, n = 8, 6, 2
    block = BasicBlock(c)
    block.bn2.weight.requires_grad_(False)
    before = {k: v.numpy().copy() for k, v in block.state_dict().items()}
    block.train()
    s = summary(block, input_size=(n, c, hw, hw))
    # each conv: 3*3 * 8 in * 8 out * 6*6 positions = 20,736 MACs per sample, 576 weights
    # each bn: 2 * 8 = 16 params (running statistics are buffers, not parameters)
    assert s.total_params == 2 * 576 + 2 * 16 == 1_184
    assert s.trainable_params == 1_184 - 8 and s.non_trainable_params == 8
    assert s.total_macs == n * 2 * 20_736
    assert _row(s, "conv2").macs == n * 20_736
    assert _row(s, "relu").calls == 2
    assert _row(s, "bn1").params == 16 and _row(s, "bn1").macs == 0
    # the forward ran in eval mode and left the model as it was: training flag and buffers
    assert block.training and block.bn1.training
    after = block.state_dict()
    assert all(np.array_equal(before[k], after[k].numpy()) for k in before)
    _check_totals(s)


def test_conv_groups_stride_dilation():
    conv = nn.Conv2d(8, 12, (3, 5), stride=2, padding=1, dilation=(1, 2), groups=4)
    s = summary(conv, input_size=(1, 8, 11, 13))
    # out H = (11 + 2 - 1*(3-1) - 1)//2 + 1 = 6; W = (13 + 2 - 2*(5-1) - 1)//2 + 1 = 4
    # MACs = 15 (kernel area) * 8/4 (in per group) * 12 (out) * 6*4 = 8,640
    assert _row(s, "").output_shape == (1, 12, 6, 4)
    assert s.total_macs == 8_640
    assert s.total_params == 12 * 2 * 15 + 12
    c1 = nn.Conv1d(4, 6, 3)
    s1 = summary(c1, input_size=(2, 4, 10))
    assert s1.total_macs == 2 * 8 * 6 * 4 * 3                # 8 positions * 6 out * 4 in * 3 taps


def test_transposed_conv_counts():
    up = nn.ConvTranspose2d(6, 4, 3, stride=2, padding=1, output_padding=1, groups=2)
    s = summary(up, input_size=(2, 6, 5, 7))
    # out H = (5-1)*2 - 2 + 3 + 1 = 10, W = (7-1)*2 - 2 + 3 + 1 = 14; every input element
    # (2*6*5*7 = 420) is scattered to 9 taps * 4/2 out channels of its group: 7,560 MACs
    assert _row(s, "").output_shape == (2, 4, 10, 14)
    assert s.total_macs == 7_560
    assert s.total_params == 6 * 2 * 9 + 4
    assert summary(nn.ConvTranspose1d(3, 5, 4), input_size=(1, 3, 6)).total_macs == 6 * 3 * 4 * 5


# ---------------------------------------------------------------------- GPT

@pytest.mark.parametrize("n_kv_head", [None, 1])
def test_gpt_counts(n_kv_head):
    v, t, d, layers, heads, blk, n = 37, 6, 16, 2, 4, 8, 2
    gpt = GPT(v, block_size=blk, n_layer=layers, n_head=heads, d_model=d, n_kv_head=n_kv_head)
    s = summary(gpt, input_size=(n, t), dtypes=[np.int64], depth=4)
    kv = d if n_kv_head is None else d // heads            # the k and v widths
    hd = d // heads
    # per block and sample: q projection T*d*d, k and v 2*T*d*kv, attention QK^T and AV
    # 2*T*T*hd per head (4*T^2*hd FLOPs), out projection T*d*d, MLP T*d*4d + T*4d*d
    per_block = t * d * d + 2 * t * d * kv + heads * 2 * t * t * hd + t * d * d + 8 * t * d * d
    head = t * d * v                                         # the tied output head
    assert s.total_macs == n * (layers * per_block + head)
    attn = _row(s, "blocks.0.attn")
    assert attn.own_macs == n * (t * d * d + 2 * t * d * kv + heads * 2 * t * t * hd)
    assert attn.own_flops == 2 * attn.own_macs
    assert _row(s, "blocks.0.attn.out_proj").macs == n * t * d * d
    assert _row(s, "blocks.1").macs == n * per_block
    assert _row(s, "").own_macs == n * head
    # params: wte v*d, wpe blk*d; per block ln 2*2d, in_proj (d + 2kv)*d + (d + 2kv), out
    # d*d + d, mlp d*4d + 4d + 4d*d + d; ln_f 2d; lm_head is wte's weight (counted once)
    block_params = 4 * d + (d + 2 * kv) * (d + 1) + d * d + d + 8 * d * d + 5 * d
    total = v * d + blk * d + layers * block_params + 2 * d
    assert s.total_params == total == count_parameters(gpt)
    assert _row(s, "lm_head").params == v * d and _row(s, "lm_head").own_params == 0
    assert _row(s, "lm_head").output_shape is None               # never called (the head is F.linear)
    assert _row(s, "").output_shape == (n, t, v)
    assert _row(s, "blocks").output_shape is None and _row(s, "blocks").macs == n * layers * per_block
    _check_totals(s)
    assert "blocks.0" not in str(s) and "attn (MultiheadAttention)" in str(s)
    assert "out_proj" not in str(summary(gpt, (1, t), dtypes=np.int64, depth=3))


def test_gpt_summary_leaves_the_generator_alone():
    gpt = GPT(11, block_size=4, n_layer=1, n_head=2, d_model=8, dropout=0.5)
    dlkern.manual_seed(5)
    a = dlkern.rand(3).numpy()
    dlkern.manual_seed(5)
    summary(gpt, input_data=dlkern.tensor(np.array([[1, 2, 3]])))
    assert np.array_equal(dlkern.rand(3).numpy(), a)
    assert gpt.training


def test_unbatched_and_seq_first_attention():
    mha = nn.MultiheadAttention(8, 2, kdim=4, vdim=4)
    q = dlkern.randn(5, 3, 8)          # (T, N, E): batch_first=False
    kv = dlkern.randn(7, 3, 4)
    s = summary(mha, input_data=(q, kv, kv))
    # q: 5*8*8 per sample, k, v: 2 * 7*8*4; attention 2 heads * 2 * 5*7*4; out_proj 5*8*8
    assert s.total_macs == 3 * (5 * 64 + 2 * 7 * 32 + 2 * 2 * 35 * 4 + 5 * 64)
    s2 = summary(nn.MultiheadAttention(8, 2), input_data=(dlkern.randn(5, 8),) * 3)
    assert s2.total_macs == 3 * 5 * 64 + 2 * 2 * 25 * 4 + 5 * 64   # unbatched (L, E)


# ---------------------------------------------------------------------- more

def test_tied_and_shared_modules_counted_once():
    lin = nn.Linear(4, 4)
    net = nn.Sequential(lin, nn.ReLU(), lin)               # the same module twice
    s = summary(net, input_size=(2, 4))
    assert s.total_params == 20 and _row(s, "0").calls == 2
    assert s.total_macs == 2 * (2 * 16)
    assert len(s.rows) == 3                               # named_modules lists it once
    _check_totals(s)


def test_parameterless_model_and_empty_batch():
    s = summary(nn.Sequential(nn.ReLU(), nn.Flatten()), input_size=(0, 3, 2))
    assert s.total_params == 0 and s.total_macs == 0 and s.activation_bytes == 0
    assert _row(s, "1").output_shape == (0, 6)
    s2 = summary(MLP(4, (3,), 2), input_size=(0, 4))
    assert s2.total_macs == 0 and s2.total_params == 4 * 3 + 3 + 3 * 2 + 2


def test_input_data_forms_and_dtypes():
    m = MLP(4, (3,), 2).double()
    s = summary(m, input_size=[(2, 4)], device="cpu")
    assert s.input_bytes == 2 * 4 * 8 and s.param_bytes == (4 * 3 + 3 + 3 * 2 + 2) * 8
    s2 = summary(m, input_data=[dlkern.tensor(np.zeros((5, 4)))])
    assert _row(s2, "").output_shape == (5, 2)
    s3 = summary(m, input_data={"x": dlkern.tensor(np.zeros((1, 4)))})
    assert _row(s3, "").output_shape == (1, 2)
    # non-contiguous input
    x = dlkern.tensor(np.zeros((4, 6)))[:, ::2].transpose(0, 1)
    s4 = summary(nn.Linear(4, 2, dtype=np.float64), input_data=x)
    assert _row(s4, "").output_shape == (3, 2) and s4.total_macs == 3 * 8


def test_errors():
    m = MLP(4, (3,), 2)
    with pytest.raises(ValueError, match="exactly one"):
        summary(m)
    with pytest.raises(ValueError, match="exactly one"):
        summary(m, (1, 4), input_data=dlkern.zeros(1, 4))
    with pytest.raises(ValueError, match="input_size"):
        summary(m, input_size=(1, -4))
    with pytest.raises(ValueError, match="input_size"):
        summary(m, input_size="1x4")
    with pytest.raises(ValueError, match="2 dtypes for 1 inputs"):
        summary(m, (1, 4), dtypes=[np.float32, np.float32])
    with pytest.raises(ValueError, match="depth"):
        summary(m, (1, 4), depth=-1)
    with pytest.raises(TypeError, match="dlkern.nn.Module"):
        summary(lambda x: x, (1, 4))
    with pytest.raises(TypeError, match="dlkern.nn.Module"):
        count_parameters([1, 2])
    with pytest.raises(ValueError, match="Linear"):
        summary(m, (1, 5))                                  # the model's own error comes through
    assert m.layers[1]._hooks is None and m.training         # hooks removed, mode restored


def test_summary_table_depth_and_api():
    s = summary(LeNet5(), (1, 1, 28, 28), depth=1)
    text = str(s)
    assert repr(s) == text
    assert "features (Sequential)" in text and "Conv2d" not in text
    assert "Total params: 61,706" in text and "Non-trainable params: 0" in text
    assert "Total MACs: 416,520" in text and "Parameter memory" in text and "Activation memory" in text
    assert dlkern.utils.summary is summary and "utils" in dlkern.__all__


def test_flops_match_torch_flop_counter():
    """torch.utils.flop_counter counts matrix products and convolutions as 2 FLOPs per
    multiply-add without bias adds: the convention here."""
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode
    tn = torch.nn
    cases = [
        (MLP(784, (256, 256), 10), tn.Sequential(tn.Flatten(), tn.Linear(784, 256), tn.ReLU(), tn.Linear(256, 256),
                                                 tn.ReLU(), tn.Linear(256, 10)), (3, 784)),
        (LeNet5(), tn.Sequential(tn.Conv2d(1, 6, 5, padding=2), tn.ReLU(), tn.MaxPool2d(2), tn.Conv2d(6, 16, 5),
                                 tn.ReLU(), tn.MaxPool2d(2), tn.Flatten(), tn.Linear(400, 120), tn.ReLU(),
                                 tn.Linear(120, 84), tn.ReLU(), tn.Linear(84, 10)), (2, 1, 28, 28)),
        (BasicBlock(8), _torch_block(torch, 8), (2, 8, 6, 6)),
        (nn.Conv2d(8, 12, (3, 5), stride=2, padding=1, dilation=(1, 2), groups=4),
         tn.Conv2d(8, 12, (3, 5), stride=2, padding=1, dilation=(1, 2), groups=4), (1, 8, 11, 13)),
        (nn.ConvTranspose2d(6, 4, 3, stride=2, padding=1, output_padding=1, groups=2),
         tn.ConvTranspose2d(6, 4, 3, stride=2, padding=1, output_padding=1, groups=2), (2, 6, 5, 7)),
    ]
    for ours, theirs, shape in cases:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            theirs(torch.randn(*shape))
        assert summary(ours, input_size=shape).total_flops == counter.get_total_flops(), type(ours).__name__


def test_summary_on_the_cuda_host_twin():
    import host_cuda
    from dlkern.device import CUDADevice
    dev = CUDADevice(0, module=host_cuda)
    model = MLP(6, (5,), 3).to(dev)
    s = summary(model, input_size=(2, 6))           # inputs made on the model's device
    assert s.total_macs == 2 * (6 * 5 + 5 * 3) and s.total_params == 6 * 5 + 5 + 5 * 3 + 3
    assert _row(s, "").output_shape == (2, 3)
