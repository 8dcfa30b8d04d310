"""Generated loggate client stubs live in loggate/v1 (run generate.sh)."""
