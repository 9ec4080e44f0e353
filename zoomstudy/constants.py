"""Normalisation constants of the models the study loads (as timm's data/constants.py): one home,
below every stage, so models, views and the experiment share them without importing each other."""

#: ImageNet's per-channel mean and std (RGB, inputs in [0, 1]): torchvision's and timm's default, and
#: the paper's normalisation for every model (`normalization="imagenet"`).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: OpenAI CLIP's preprocessing statistics (open_clip.constants), the fallback when a CLIP model has none.
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
