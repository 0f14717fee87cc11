"""Codat's webhooks: the receiver (``receiver.py``, needs the ``webhooks`` extra) and the events
file it shares with the tap (``queue.py``, standard library only: the tap imports it)."""
