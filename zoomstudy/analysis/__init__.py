"""Stage 5, the analyses, all functions of stored results: Table 1 bounds, greedy cover and per-anchor grids
(`bounds`) and their tidy tables beside the published numbers (`bound_tables`), intervals and paired tests (`stats`), test-time aggregation (`tta`) and MEMO (`memo`),
ImageNet-Hard scoring (`hard`), test-resolution curves (`resolution`), and the paper's numbers (`paper`)."""
