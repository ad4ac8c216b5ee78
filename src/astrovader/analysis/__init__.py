"""Analysis: metrics, figures, the Galaxy Zoo comparison, choosing K, the report."""
