"""``python -m benchmarks`` runs every benchmark script; each prints one JSON document."""

from benchmarks import codes_bench

codes_bench.main()
