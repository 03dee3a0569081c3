"""Paper and live trading sessions: the engine driven by a feed, with state in the store."""
