"""CIFAR-10: find (or download) the files, read them safely, and build the subsets that are scored.

``files`` finds the ``cifar-10-batches-py`` folder and downloads it when absent; ``batches`` reads
its pickles with an unpickler that imports nothing but numpy's array names; ``subsets`` draws
stratified, seeded subsets; ``preprocessing`` scales, downsamples, standardises (and ZCA-whitens)
with the training subset's statistics alone; ``splits`` puts them together into the data a score or
a trained network sees, and names its settings. The names below are the package's public face.

May import: :mod:`nas_cntk.errors`, :mod:`nas_cntk.checks`.
"""
from nas_cntk.data.batches import CLASSES, IMAGE_SIZE, TEST_IMAGES, load_cifar10
from nas_cntk.data.files import (
    CIFAR10_MD5,
    CIFAR10_URL,
    DATA_DIR_ENV,
    FOLDER,
    TEST_FILES,
    TRAIN_FILES,
    default_data_dir,
    resolve_data_dir,
)
from nas_cntk.data.preprocessing import ZCA_REGULARISATION
from nas_cntk.data.splits import DataSettings, DataSplits, load_splits, load_training_data
from nas_cntk.data.subsets import stratified_indices, validation_split

__all__ = ["CIFAR10_MD5", "CIFAR10_URL", "CLASSES", "DATA_DIR_ENV", "FOLDER", "IMAGE_SIZE", "TEST_FILES",
           "TEST_IMAGES", "TRAIN_FILES", "ZCA_REGULARISATION", "DataSettings", "DataSplits", "default_data_dir",
           "load_cifar10", "load_splits", "load_training_data", "resolve_data_dir", "stratified_indices",
           "validation_split"]
