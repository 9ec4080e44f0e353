"""Stage 1, the model: loading timm / torchvision / checkpoint models with the preprocessing that travels
with them (`loading`), and CLIP zero-shot classifiers (`clip`, the optional `clip` extra)."""
