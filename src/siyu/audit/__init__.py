"""The audit log of admin actions: append-only, readable by admins only."""
