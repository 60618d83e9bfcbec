"""The public event-tracking API: brands post their own events (batch or one), resolved to customers
by identity and appended to the event log."""
