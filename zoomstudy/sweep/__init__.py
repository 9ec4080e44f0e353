"""Stages 3 and 4: the resumable sweep that renders every view and runs the model (`engine`), and the
Parquet result sets it writes, with their provenance, and `atomic_write`, the one way the package
writes a file others may read (`store`). The paper's whole matrix of sweeps is planned and run by
`zoomstudy.matrix`."""
