"""Password hashing, tokens, secret encryption and partner signatures."""
