"""bench.report: the paper's tables (markdown, LaTeX) and figures from a store's records."""
