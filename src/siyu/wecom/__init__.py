"""WeCom channel: per-organization credentials, the callback endpoint, its inbox and event processing."""
