"""The host process: its thread budget and how to install what the GPU backends need (nothing heavy imported)."""
