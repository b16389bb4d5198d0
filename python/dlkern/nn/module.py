"""Module and the containers Sequential, ModuleList, ModuleDict."""

from collections import OrderedDict, namedtuple

import numpy as np

from ..device import device as get_device
from ..dtypes import as_dtype, bfloat16, float16, is_floating
from ..tensor import Tensor
from ..interop import host_array
from . import hooks as _hooks
from .parameter import Parameter


class IncompatibleKeys(namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])):
    """What load_state_dict(strict=False) skipped, as PyTorch's named tuple;
    result["missing_keys"] works too (the earlier dict form)."""

    __slots__ = ()

    def __getitem__(self, key):
        if isinstance(key, str):
            return getattr(self, key)
        return super().__getitem__(key)

    def __repr__(self):
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return super().__repr__()


class Module:
    """Base class of layers. Parameters, submodules and buffers assigned as attributes
    are registered (in order) and live as plain attributes too, so reading
    ``self.weight`` costs a normal attribute lookup."""

    # The hook table (nn/hooks.py): None until a hook is registered, so a call without
    # hooks costs one attribute test.
    _hooks = None

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        params = self.__dict__.get("_parameters")
        if params is None:
            if isinstance(value, (Parameter, Module)):
                raise AttributeError("call Module.__init__() before assigning parameters or submodules")
            object.__setattr__(self, name, value)
            return
        if isinstance(value, Parameter):
            self._modules.pop(name, None)
            self._buffers.pop(name, None)
            params[name] = value
        elif isinstance(value, Module):
            params.pop(name, None)
            self._buffers.pop(name, None)
            self._modules[name] = value
        elif name in params:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as parameter '{name}' (Parameter or None expected)")
            params[name] = None
        elif name in self._modules:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as child module '{name}' (Module or None expected)")
            self._modules[name] = None
        elif name in self._buffers:
            self._buffers[name] = value
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        for d in (self._parameters, self._modules, self._buffers):
            d.pop(name, None)
        object.__delattr__(self, name)

    def register_buffer(self, name, value, persistent=True):
        """A non-learnable Tensor (running statistics) saved in the state_dict."""
        self._buffers[name] = value
        if not persistent:
            self.__dict__.setdefault("_non_persistent", set()).add(name)
        object.__setattr__(self, name, value)

    def register_parameter(self, name, param):
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter: '{name}' must be a Parameter or None")
        self._parameters[name] = param
        object.__setattr__(self, name, param)

    def add_module(self, name, module):
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module: {type(module).__name__} is not a Module")
        self._modules[name] = module
        object.__setattr__(self, name, module)

    register_module = add_module

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    def __call__(self, *args, **kwargs):
        if self._hooks is None:
            return self.forward(*args, **kwargs)
        return self._hooks.call(self, args, kwargs)

    # -------------------------------------------------------------- hooks (as torch.nn.Module)
    def register_forward_pre_hook(self, hook, *, prepend=False, with_kwargs=False):
        """hook(module, args) -> None or new args (a tuple; a single value is wrapped in
        one), run before forward; with_kwargs: hook(module, args, kwargs) -> None or
        (new_args, new_kwargs). prepend: run before the hooks already registered.
        Returns a handle whose .remove() unregisters it."""
        return _hooks.register(self, "forward_pre", hook, prepend, (hook, bool(with_kwargs)))

    def register_forward_hook(self, hook, *, prepend=False, with_kwargs=False):
        """hook(module, args, output) -> None or a replacement output, run after forward
        (args as the pre-hooks left them); with_kwargs: hook(module, args, kwargs, output)."""
        return _hooks.register(self, "forward", hook, prepend, (hook, bool(with_kwargs)))

    def register_full_backward_hook(self, hook, prepend=False):
        """hook(module, grad_input, grad_output) -> None or a replacement grad_input tuple,
        called once the gradients of the module's outputs and of its tensor inputs are
        known. grad_input has one entry per positional argument: None for a non-tensor,
        zeros (as torch) for a tensor that got no gradient or does not require grad, all
        None (the hook then runs with grad_output alone) when no input requires grad.
        grad_output has one entry per output (None for a non-tensor or one unused)."""
        return _hooks.register(self, "backward", hook, prepend)

    def register_full_backward_pre_hook(self, hook, prepend=False):
        """hook(module, grad_output) -> None or a replacement grad_output tuple, called
        when the gradients of the module's outputs are known, before they flow on."""
        return _hooks.register(self, "backward_pre", hook, prepend)

    def get_submodule(self, target):
        """The submodule at dotted path `target` ("blocks.0.attn"; "" is self)."""
        if target == "":
            return self
        mod = self
        for item in target.split("."):
            if not hasattr(mod, item):
                raise AttributeError(mod._get_name() + " has no attribute `" + item + "`")
            mod = getattr(mod, item)
            if not isinstance(mod, Module):
                raise AttributeError("`" + item + "` is not an nn.Module")
        return mod

    def _get_name(self):
        return type(self).__name__

    # -------------------------------------------------------------- traversal
    def named_modules(self, memo=None, prefix=""):
        memo = set() if memo is None else memo
        stack = [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if module is None or id(module) in memo:
                continue
            memo.add(id(module))
            yield name, module
            children = [(f"{name}.{k}" if name else k, m) for k, m in module._modules.items()]
            stack.extend(reversed(children))

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        for name, m in self._modules.items():
            if m is not None:
                yield name, m

    def children(self):
        for _, m in self.named_children():
            yield m

    def named_parameters(self, prefix="", recurse=True):
        seen = set()
        modules = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for mod_name, module in modules:
            for name, p in module._parameters.items():
                if p is None or id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{mod_name}.{name}" if mod_name else name), p

    def parameters(self, recurse=True):
        if not recurse:
            return [p for p in self._parameters.values() if p is not None].__iter__()
        return iter(self._parameter_list())

    def _parameter_list(self):
        # Same order as named_parameters, without building names (zero_grad runs every step).
        out, seen_p, seen_m = [], set(), set()
        stack = [self]
        while stack:
            module = stack.pop()
            if module is None or id(module) in seen_m:
                continue
            seen_m.add(id(module))
            for p in module._parameters.values():
                if p is not None and id(p) not in seen_p:
                    seen_p.add(id(p))
                    out.append(p)
            stack.extend(reversed(module._modules.values()))
        return out

    def named_buffers(self, prefix="", recurse=True):
        modules = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for mod_name, module in modules:
            for name, b in module._buffers.items():
                if b is not None:
                    yield (f"{mod_name}.{name}" if mod_name else name), b

    def buffers(self, recurse=True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    # -------------------------------------------------------------- modes and conversion
    def train(self, mode=True):
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none=True):
        for p in self._parameter_list():
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.data[...] = 0

    def apply(self, fn):
        for m in list(self.modules())[::-1]:
            fn(m)
        return self

    def to(self, *args, **kwargs):
        """to(dtype) converts floating parameters and buffers in place (the Parameter
        objects stay the same, so an optimizer built earlier still holds them);
        to(device) moves them (and their gradients) to that device in place too; an
        optimizer built before keeps working and its state follows on its next step."""
        dtype = kwargs.get("dtype")
        dev = kwargs.get("device")
        for a in args:
            if isinstance(a, str) or hasattr(a, "array_type"):  # a device name or namespace
                dev = a
            else:
                dtype = a
        if dev is not None:
            target = get_device(dev)
            for p in self.parameters():
                _move_in_place(p, target)
                if p.grad is not None:
                    _move_in_place(p.grad, target)
            for _, b in self.named_buffers():
                _move_in_place(b, target)
        if dtype is not None:
            dtype = as_dtype(dtype)
            if not is_floating(dtype):
                raise TypeError(f"Module.to: only floating dtypes are allowed, got {dtype}")
            for p in self.parameters():
                p.data = p.device.cast(p.data, dtype)
                if p.grad is not None:
                    p.grad.data = p.device.cast(p.grad.data, dtype)
            for _, b in self.named_buffers():
                if is_floating(b.data.dtype):
                    b.data = b.device.cast(b.data, dtype)
        return self

    def cuda(self, device=None):
        return self.to("cuda" if device is None else (f"cuda:{device}" if isinstance(device, int) else device))

    def cpu(self):
        return self.to("cpu")

    def float(self):
        return self.to(np.float32)

    def double(self):
        return self.to(np.float64)

    def half(self):
        return self.to(float16)

    def bfloat16(self):
        return self.to(bfloat16)

    # -------------------------------------------------------------- state
    def state_dict(self, prefix=""):
        """Parameters and persistent buffers by dotted name, as detached Tensors sharing memory."""
        out = OrderedDict()
        for mod_name, module in self.named_modules(prefix=prefix.rstrip(".")):
            skip = module.__dict__.get("_non_persistent", ())
            for group in (module._parameters, module._buffers):
                for name, t in group.items():
                    if t is None or name in skip:
                        continue
                    out[f"{mod_name}.{name}" if mod_name else name] = t.detach()
        return out

    def load_state_dict(self, state_dict, strict=True):
        """Copy values into the parameters and buffers in place. strict: the keys must
        match exactly. Shapes must always match. Errors (RuntimeError, nothing copied)
        list every problem found. Returns IncompatibleKeys(missing_keys, unexpected_keys),
        as PyTorch (both empty when strict)."""
        if not hasattr(state_dict, "keys") or not hasattr(state_dict, "__getitem__"):
            raise TypeError(f"load_state_dict: expected a dict of name -> tensor/array for "
                            f"{type(self).__name__}, got {type(state_dict).__name__}")
        own = self.state_dict()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        problems = []
        if strict and (missing or unexpected):
            if missing:
                problems.append("missing keys: " + ", ".join(missing))
            if unexpected:
                problems.append("unexpected keys: " + ", ".join(str(k) for k in unexpected))
        for key, target in own.items():
            if key not in state_dict:
                continue
            value = state_dict[key]
            array = value if isinstance(value, Tensor) else host_array(value, f"load_state_dict: {key}")
            if array.dtype.kind not in "biu" and not is_floating(array.dtype):
                problems.append(f"value for {key} is not numeric (dtype {array.dtype}, "
                                f"{type(value).__name__})")
            elif array.shape != target.data.shape:
                problems.append(f"size mismatch for {key}: checkpoint has shape {tuple(array.shape)}, "
                                f"the model has shape {tuple(target.data.shape)}")
        if problems:
            raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__}:\n  " + "\n  ".join(problems))
        for key, target in own.items():
            if key in state_dict:
                # cast first (any numeric dtype loads, as PyTorch), then copy onto the target's device
                value = state_dict[key]
                if isinstance(value, Tensor):
                    value = value.detach().to(dtype=target.dtype)
                else:
                    value = host_array(value).astype(target.dtype, copy=False)  # PyTorch tensors too
                target.copy_(value)
        return IncompatibleKeys(missing, unexpected)

    # -------------------------------------------------------------- repr
    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = []
        extra = self.extra_repr()
        if extra:
            lines = extra.split("\n")
        for name, m in self._modules.items():
            child = repr(m).replace("\n", "\n  ")
            lines.append(f"({name}): {child}")
        if not self._modules:
            return f"{type(self).__name__}({extra})"
        return type(self).__name__ + "(\n  " + "\n  ".join(lines) + "\n)"


class Sequential(Module):
    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, m in modules[0].items():
                self.add_module(name, m)
        else:
            for i, m in enumerate(modules):
                self.add_module(str(i), m)

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x

    def __getitem__(self, index):
        mods = list(self._modules.values())
        if isinstance(index, slice):
            return Sequential(*mods[index])
        return mods[index]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module):
        self.add_module(str(len(self)), module)
        return self


class ModuleList(Module):
    def __init__(self, modules=()):
        super().__init__()
        for m in modules:
            self.append(m)

    def append(self, module):
        self.add_module(str(len(self._modules)), module)
        return self

    def extend(self, modules):
        for m in modules:
            self.append(m)
        return self

    def __getitem__(self, index):
        mods = list(self._modules.values())
        if isinstance(index, slice):
            return ModuleList(mods[index])
        return mods[index]

    def __setitem__(self, index, module):
        key = list(self._modules)[index]
        self.add_module(key, module)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())


class ModuleDict(Module):
    def __init__(self, modules=None):
        super().__init__()
        if modules:
            self.update(modules)

    def update(self, modules):
        items = modules.items() if hasattr(modules, "items") else modules
        for k, m in items:
            self[k] = m

    def __getitem__(self, key):
        return self._modules[key]

    def __setitem__(self, key, module):
        self.add_module(key, module)

    def __delitem__(self, key):
        del self._modules[key]
        object.__delattr__(self, key)

    def __contains__(self, key):
        return key in self._modules

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()


def _move_in_place(t, target):
    """Point tensor t (a parameter, buffer or gradient) at a copy of its data on `target`."""
    if t.device is target:
        return
    moved = t.detach().to(target)
    t.data, t.device = moved.data, moved.device
