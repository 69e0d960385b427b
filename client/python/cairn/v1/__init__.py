"""Generated gRPC stubs for cairn.v1 (see generate.sh)."""
