"""Stage 6, figures and reports: plots over tidy tables (`plots`), the provenance sentence every report
prints (`tables`), the images a report shows (`examples`), one call per notebook cell (`steps`), the
profiles the notebooks run with (`profiles`), the paper's tables rendered from the store
(`paper_tables`), the papermill report site and its templates (`notebooks`, `templates/`), the
notebooks' install source on Colab (`colab`), the view explorer (`explorer`), and the one-page model
profile (`model_profile`)."""
