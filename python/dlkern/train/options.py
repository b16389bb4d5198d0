"""Which ``train`` options belong to which --model, their defaults, and the help's
per-model defaults table.

Model-specific options are parsed with a default of None (a sentinel: "not given") so
that one given for another model is an error (exit 2) rather than silently ignored;
``resolve`` then fills in the defaults below and the per-model ones of train.config.
"""

from __future__ import annotations

from typing import Dict, Tuple

from .._cli import UsageError
from .config import DEFAULTS, GPT_DEFAULTS, LM_ARCH_DEFAULTS, LM_MODELS, MOMENTUM_DEFAULTS

IMAGE_MODELS = ("mlp", "lenet")
RNN_MODELS = ("lstm", "gru")

# dest -> (the models it applies to, its default when not given; None: none, or a
# per-model default from train.config).
MODEL_OPTIONS: Dict[str, Tuple[Tuple[str, ...], object]] = {
    "dataset": (IMAGE_MODELS, "digits"),
    "data_dir": (IMAGE_MODELS, None),
    "epochs": (IMAGE_MODELS, None),
    "batch_norm": (("lenet",), False),
    "adversarial": (IMAGE_MODELS, None),
    "eps": (IMAGE_MODELS, None),
    "adv_norm": (IMAGE_MODELS, "linf"),
    "pgd_steps": (IMAGE_MODELS, 7),
    "pgd_alpha": (IMAGE_MODELS, None),
    "clean_weight": (IMAGE_MODELS, 0.0),
    "mixup": (IMAGE_MODELS, None),
    "cutmix": (IMAGE_MODELS, None),
    "mix_label_smoothing": (IMAGE_MODELS, 0.1),
    "text": (LM_MODELS, None),
    "steps": (LM_MODELS, None),
    "block_size": (LM_MODELS, 128),
    "n_layer": (LM_MODELS, None),
    "d_model": (LM_MODELS, 128),
    "dropout": (LM_MODELS, 0.0),
    "eval_interval": (LM_MODELS, 100),
    "eval_batches": (LM_MODELS, 8),
    "sample_tokens": (LM_MODELS, 200),
    "n_head": (("gpt",), 4),
    "n_kv_head": (("gpt",), None),
    "pos_encoding": (("gpt",), "learned"),
    "checkpoint_activations": (("gpt",), False),
    "hidden_size": (RNN_MODELS, None),
}


def flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _names(models) -> str:
    models = list(models)
    return models[0] if len(models) == 1 else ", ".join(models[:-1]) + " or " + models[-1]


def model_defaults(model: str) -> Dict[str, object]:
    """The per-model defaults of train.config for `model` (epochs or steps, optimizer,
    lr, batch size, weight decay, scheduler; layers and widths of the language models)."""
    if model in LM_MODELS:
        return {**GPT_DEFAULTS, **LM_ARCH_DEFAULTS[model]}
    return dict(DEFAULTS[model])


def resolve(args) -> None:
    """Refuse options given for another model (UsageError naming the option and the model),
    then fill in every default: the fixed ones of MODEL_OPTIONS, then the model's own."""
    for dest, (models, _) in MODEL_OPTIONS.items():
        value = getattr(args, dest, None)
        if value is not None and value is not False and args.model not in models:
            raise UsageError(f"{flag(dest)} is for --model {_names(models)}, not --model {args.model}")
    for dest, (models, default) in MODEL_OPTIONS.items():  # (another model's stay None: resolve again is a no-op)
        if args.model in models and getattr(args, dest, None) is None:
            setattr(args, dest, default)
    for key, value in model_defaults(args.model).items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if getattr(args, "momentum", None) is not None and args.optimizer not in MOMENTUM_DEFAULTS:
        raise UsageError(f"--momentum is for --optimizer {_names(MOMENTUM_DEFAULTS)}, not {args.optimizer} "
                         f"(--model {args.model} trains with {DEFAULTS.get(args.model, GPT_DEFAULTS)['optimizer']} "
                         f"unless --optimizer says otherwise)")


def shown_default(dest: str):
    """How the help states the default of a sentinel option (None: it has no default)."""
    if dest in ("epochs", "optimizer", "lr", "batch_size", "weight_decay", "scheduler", "steps"):
        by_value: Dict[object, list] = {}
        for label, model in (("mlp", "mlp"), ("lenet", "lenet"), ("gpt/lstm/gru", "gpt")):
            if dest in model_defaults(model):
                by_value.setdefault(model_defaults(model)[dest], []).append(label)
        return "; ".join(f"{'/'.join(labels)} {value}" for value, labels in by_value.items())
    if dest == "n_layer":
        return f"gpt {LM_ARCH_DEFAULTS['gpt']['n_layer']}, lstm/gru {LM_ARCH_DEFAULTS['lstm']['n_layer']}"
    if dest == "hidden_size":
        return str(LM_ARCH_DEFAULTS["lstm"]["hidden_size"])
    if dest == "momentum":
        return ", ".join(f"{name} {value}" for name, value in MOMENTUM_DEFAULTS.items())
    if dest in MODEL_OPTIONS:
        default = MODEL_OPTIONS[dest][1]
        return None if default is None or default is False else str(default)
    return None


def defaults_table() -> str:
    """The help's epilog: every per-model default, one column per model."""
    models = ("mlp", "lenet", "gpt", "lstm", "gru")
    rows = [("", *models)]
    keys = ["epochs", "steps", "optimizer", "lr", "batch_size", "weight_decay", "scheduler", "n_layer",
            "hidden_size"]
    for key in keys:
        rows.append((flag(key), *(str(model_defaults(m).get(key, "-")) for m in models)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    return ("per-model defaults (an option given for a model it does not apply to is an error):\n"
            + "\n".join(lines))
