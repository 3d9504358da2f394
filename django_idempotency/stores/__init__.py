"""Where key records live: the database store (and, later, the cache store)."""
