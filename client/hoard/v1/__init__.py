"""Generated from protos/hoard/v1 by scripts/gen_protos.py. Do not edit."""
