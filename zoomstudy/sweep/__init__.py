"""Stages 3 and 4: the resumable sweep that renders every view and runs the model (`engine`), and the
Parquet result sets it writes, with their provenance (`store`)."""
