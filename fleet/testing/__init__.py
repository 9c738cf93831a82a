"""Running fleet as local processes: the harness behind the demo, the tests and the benchmark."""
