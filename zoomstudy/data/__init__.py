"""Stage 1, the data: the source contract (`source`: Sample, Record, Source), robust image decoding
(`decode`), file fingerprints (`fingerprint`), the sources of local files (`folders`), of Hugging Face
data (`hub`) and of generated images (`synthetic`), the ImageNet-1k classes, label cells and the label
spaces a dataset is scored in (`labels`), the ReaL label sets (`real`), and the registry of the paper's
datasets (`registry`).

Everything public is re-exported here, so `from zoomstudy.data import CsvSource, open_dataset` works.
"""
from .decode import BadImage, DecodeOptions, load_image  # noqa: F401
from .fingerprint import DEFAULT_FINGERPRINT, FINGERPRINTS, file_sha256  # noqa: F401
from .source import Record, Sample, Source, load_sample  # noqa: F401
from .folders import (  # noqa: F401
    FOLDER_LABELINGS, IMAGE_EXTENSIONS, CsvSource, DevkitValSource, ImageFolderSource, ObjectNetSource,
    is_devkit_val_folder,
)
from .hub import HFSource  # noqa: F401
from .synthetic import SyntheticSource  # noqa: F401
from .real import real_label_sets, real_label_table, timm_real_labels  # noqa: F401
from .registry import DATASETS, LABEL_SPACE_NAMES, DatasetSpec, SOURCE_SCHEMES, open_dataset, open_source  # noqa: F401
from .labels import (  # noqa: F401
    N_IMAGENET_CLASSES, LabelSpace, check_label_range, get_label_space, imagenet_class_names, imagenet_synsets,
    parse_labels,
)
