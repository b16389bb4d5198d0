"""``train`` options for robust training (issue 15): adversarial training (--adversarial,
--eps) with a PGD-10 robust accuracy on the test split, and mixup / CutMix (--mixup,
--cutmix). They plug into fit() through its `batch_loss` hook."""

from __future__ import annotations

import sys

import numpy as np

from .. import adversarial, nn
from ..data.mixup import Mixup
from .config import positive_int

ATTACKS = ("fgsm", "pgd")
EVAL_PGD_STEPS = 10  # the robust accuracy: PGD-10


def add_robust_arguments(p) -> None:
    g = p.add_argument_group("robust training (mlp / lenet)")
    g.add_argument("--adversarial", choices=ATTACKS, default=None,
                   help="train on attacked batches (Madry et al.): fgsm or pgd")
    g.add_argument("--eps", type=float, default=None,
                   help="attack radius in units of the pixel range (0.125 = 2/16 of it); with it, the "
                        "summary also gives the PGD-10 robust test accuracy, even without --adversarial")
    g.add_argument("--adv-norm", choices=adversarial.NORMS, default=None, help="attack norm")
    g.add_argument("--pgd-steps", type=positive_int, default=None, help="PGD steps in training")
    g.add_argument("--pgd-alpha", type=float, default=None,
                   help="PGD step in pixel-range units (default 2.5 eps / steps)")
    g.add_argument("--clean-weight", type=float, default=None,
                   help="loss = w * clean loss + (1 - w) * adversarial loss (0: adversarial only)")
    g.add_argument("--mixup", type=float, default=None, metavar="ALPHA",
                   help="mixup with Beta(ALPHA, ALPHA) mixing weights and soft-target cross-entropy")
    g.add_argument("--cutmix", type=float, default=None, metavar="ALPHA",
                   help="CutMix with Beta(ALPHA, ALPHA) box areas (with --mixup too: one of them per "
                        "batch, each with probability 1/2)")
    g.add_argument("--mix-label-smoothing", type=float, default=None,
                   help="label smoothing of the mixup / CutMix soft targets")


def check_robust_arguments(args) -> str:
    """An error message for inconsistent robust-training options, or ''."""
    if args.adversarial and args.eps is None:
        return "--adversarial needs --eps"
    if args.eps is not None and not (np.isfinite(args.eps) and args.eps >= 0):
        return f"--eps must be a finite number >= 0, got {args.eps}"
    if args.pgd_alpha is not None and not (np.isfinite(args.pgd_alpha) and args.pgd_alpha > 0):
        return f"--pgd-alpha must be > 0, got {args.pgd_alpha}"
    if not 0.0 <= args.clean_weight <= 1.0:
        return f"--clean-weight must be in [0, 1], got {args.clean_weight}"
    for name in ("mixup", "cutmix"):
        value = getattr(args, name)
        if value is not None and not (np.isfinite(value) and value > 0):
            return f"--{name} must be > 0, got {value}"
    if args.adversarial and (args.mixup or args.cutmix):
        return "--adversarial does not combine with --mixup / --cutmix"
    return ""


class InputSpace:
    """The model's input range and its scale: the data are standardised, so the pixel
    range [0, 1] maps onto [train min, train max] (a digit or Fashion-MNIST training set
    holds both blank and saturated pixels) and eps e in pixel units is e * (max - min)."""

    def __init__(self, train_images):
        self.lo, self.hi = float(np.min(train_images)), float(np.max(train_images))

    def scale(self, value):
        return value * (self.hi - self.lo)

    @property
    def clamp(self):
        return self.lo, self.hi


def make_batch_loss(args, space, num_classes):
    """fit()'s batch_loss for the robust-training options, or None when none is set."""
    loss_fn = nn.functional.cross_entropy
    if args.adversarial:
        eps = space.scale(args.eps)
        steps = args.pgd_steps
        alpha = space.scale(args.pgd_alpha) if args.pgd_alpha is not None else 2.5 * eps / steps
        w = args.clean_weight

        def adversarial_loss(model, xb, yb):
            if args.adversarial == "fgsm":
                x_adv = adversarial.fgsm(model, xb, yb, eps, clamp=space.clamp)
            else:
                x_adv = adversarial.pgd(model, xb, yb, eps, alpha, steps, norm=args.adv_norm, clamp=space.clamp)
            out = model(x_adv)
            loss = loss_fn(out, yb)
            if w > 0:
                loss = w * loss_fn(model(xb), yb) + (1 - w) * loss
            return out, loss
        return adversarial_loss
    if args.mixup or args.cutmix:
        mix = Mixup(mixup_alpha=args.mixup or 0.0, cutmix_alpha=args.cutmix or 0.0,
                    label_smoothing=args.mix_label_smoothing, num_classes=num_classes)

        def mixup_loss(model, xb, yb):
            x_mix, soft = mix(xb, yb)
            out = model(x_mix)
            return out, loss_fn(out, soft)
        return mixup_loss
    return None


def robust_accuracy(model, loader, eps, space, norm="linf", device=None, seed=0):
    """Accuracy under PGD-10 (alpha 2.5 eps / 10, random start from a seeded generator) in
    eval mode; eps in pixel-range units."""
    eps_model = space.scale(eps)
    alpha = 2.5 * eps_model / EVAL_PGD_STEPS
    gen = np.random.default_rng(seed)
    was_training = model.training
    model.eval()
    correct = total = 0
    try:
        for xb, yb in loader:
            if device is not None:
                xb, yb = xb.to(device), yb.to(device)
            x_adv = adversarial.pgd(model, xb, yb, eps_model, alpha, EVAL_PGD_STEPS, norm=norm,
                                    clamp=space.clamp, generator=gen)
            pred = model(x_adv).data.argmax(axis=1)
            labels = yb.data
            correct += int((pred == labels).sum())
            total += labels.shape[0]
    finally:
        model.train(was_training)
    return correct / max(total, 1)


def report_robust(args, model, test_loader, space, device, clean_accuracy) -> None:
    if args.eps is None:
        return
    robust = robust_accuracy(model, test_loader, args.eps, space, args.adv_norm, device, args.seed)
    print(f"robust: clean test accuracy {clean_accuracy:.4f} | PGD-{EVAL_PGD_STEPS} ({args.adv_norm}, eps "
          f"{args.eps:g} of the pixel range) test accuracy {robust:.4f}", file=sys.stdout)
