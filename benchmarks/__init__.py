"""Scripts that measure and print (speed, seed sweeps, the parameter frontier): `python -m benchmarks.NAME`."""
