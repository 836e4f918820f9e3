"""gRPC servicers: each turns requests into PermissionSystem calls and results into responses."""
