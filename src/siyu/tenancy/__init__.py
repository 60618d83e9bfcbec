"""Tenancy: organizations, users and roles, API tokens and console sessions; the principal every query is
scoped by (`principal.Principal`) and the FastAPI dependencies that authenticate it (`deps`)."""
