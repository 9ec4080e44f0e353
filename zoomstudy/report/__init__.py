"""Stage 6, figures and reports: plots over tidy tables (`plots`), the tables and captions the notebooks
show (`tables`), the papermill report site (`notebooks`), and the one-page model profile
(`model_profile`)."""
