"""Users, workspaces, members and API keys."""
