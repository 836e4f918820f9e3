"""The `stonetown` command: the server (`serve`) and a client for every API call."""
