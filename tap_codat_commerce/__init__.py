"""tap-codat-commerce: a Singer tap for Codat's Commerce API."""
