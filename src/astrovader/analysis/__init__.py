"""Analysis: metrics, cluster statistics, figures, the Galaxy Zoo comparison, choosing K, input shift,
the simulation truth, and the objects an analysis works on (the report itself is `report/`)."""
