"""The gRPC API: generated code (gen/), proto <-> domain conversion, servicers and the server."""
