"""Background work on Huey: the queue (``queue.py``); tasks are declared next to their domain in tasks.py."""
