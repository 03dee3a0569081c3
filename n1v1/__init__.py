"""N1V1: one trading engine for backtest, paper and live crypto trading, as a Ray application."""

__version__ = "0.1.0"
