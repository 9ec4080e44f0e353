"""The controlled experiment: a procedural image world (`world`), small models trained on it (`training`),
and the runs that measure them like the paper's models (`runs`)."""
