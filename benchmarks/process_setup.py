"""Process setup shared by the benchmarks; `start` runs before jax is imported."""


def start() -> None:
  """As launch.main does: restart once with the allocator of moto_jax/allocator.py (MOTO_MALLOC=off:
  not), and split the CPU into one XLA device per core unless XLA_FLAGS already sets a count
  (moto_jax/cpu_devices.py)."""
  from moto_jax import allocator, cpu_devices
  allocator.reexec()
  cpu_devices.split()
