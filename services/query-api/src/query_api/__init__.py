"""The query API: the dashboard's metrics, breakdowns and tables over a columnar read model."""
