"""The diffusion prior: loading diffusers models from local folders (never the network)."""
