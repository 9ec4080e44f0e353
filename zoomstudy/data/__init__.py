"""Stage 1, the data: robust image decoding and sources (`sources`), the ImageNet-1k classes and the label
spaces a dataset is scored in (`labels`), and the registry of the paper's datasets (`registry`).

Everything public is re-exported here, so `from zoomstudy.data import CsvSource, open_dataset` works.
"""
from .sources import *  # noqa: F401,F403
from .sources import BadImage, Record, Sample, Source, load_image, parse_labels  # noqa: F401
from .registry import DATASETS, LABEL_SPACE_NAMES, DatasetSpec, SOURCE_SCHEMES, open_dataset, open_source  # noqa: F401
from .labels import (  # noqa: F401
    N_IMAGENET_CLASSES, LabelSpace, get_label_space, imagenet_class_names, imagenet_synsets,
)
