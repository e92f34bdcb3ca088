"""mobileisp.android_bench stage."""
