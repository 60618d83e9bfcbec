"""Customer groups: WeCom external group chats and their members."""
