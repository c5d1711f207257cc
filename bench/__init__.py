"""Side-by-side benchmarks behind ``cobra-edge bench``; results are JSON files under bench/results/."""
