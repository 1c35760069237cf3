"""Developer and CI tools that are not part of the runtime wheel (`edge_ich/` never imports them)."""
