"""Run history: SQLAlchemy Core over SQLite or PostgreSQL, trends and change points."""

from farm.history.store import (
    Configuration,
    Filters,
    History,
    HistoryError,
    Regression,
    RunRow,
    TrendPoint,
    default_url,
)

__all__ = [
    "Configuration",
    "Filters",
    "History",
    "HistoryError",
    "Regression",
    "RunRow",
    "TrendPoint",
    "default_url",
]
