"""mobileisp.export stage."""
