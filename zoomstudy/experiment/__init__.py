"""The controlled experiment: a procedural image world (`world`), small models trained on it (`training`),
the runs that measure them like the paper's models (`runs`), the world's ImageNet-Hard (`hard_set`),
and the practitioners' questions answered causally on it, with intervals (`questions`)."""
