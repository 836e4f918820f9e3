"""Generated gRPC code of the Stonetown API (scripts/gen_proto.py). Do not edit."""
