"""Property-based and stateful fuzzing of the parsers and guards the service relies on."""

from hypothesis import HealthCheck, settings

# No deadlines: make test asserts no timings, and the machine is shared.
fuzz = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
