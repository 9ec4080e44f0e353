"""Stage 6, figures and reports: plots over tidy tables (`plots`), the tables and captions the notebooks
show (`tables`), one call per notebook step (`steps`), the paper's tables rendered from the store
(`paper_tables`), the papermill report site (`notebooks`), the notebooks' install source on Colab
(`colab`), and the one-page model profile (`model_profile`)."""
