"""Personal-data rights (PIPL): a person's data exported, erased on request, their consents; retention."""
