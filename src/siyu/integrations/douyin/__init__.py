"""Douyin open platform: webhook signature and payload parsing, the comment-reply client, and an HTTP fake."""
