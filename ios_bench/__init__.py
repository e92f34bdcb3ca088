"""mobileisp.ios_bench stage."""
