"""rmtkit: Heavy-Tailed Self-Regularization diagnostics from weights alone."""
