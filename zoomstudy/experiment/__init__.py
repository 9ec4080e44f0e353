"""The controlled experiment: a procedural image world (`world`), small models trained on it (`training`),
the runs that measure them like the paper's models (`runs`), the world's ImageNet-Hard (`hard_set`),
and the practitioners' questions answered causally on it, with intervals (`questions`)."""

# the experiment's model and data names ("world:REGIME", "world-hard:N", ...) enter the scheme
# registries of models.loading and data.registry when the package is imported (study imports it)
from zoomstudy.experiment import schemes  # noqa: E402,F401
