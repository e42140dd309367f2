"""Exchange rules: the rule-set schema, its TOML files, and evaluation."""
