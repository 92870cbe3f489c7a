"""Process setup shared by the benchmarks; `start` runs before jax is imported."""


def start() -> None:
  """As launch.main does: restart once with the allocator of moto_jax/xla_cpu/allocator.py (MOTO_MALLOC=off:
  not), and split the CPU into one XLA device per core unless XLA_FLAGS already sets a count
  (moto_jax/xla_cpu/cpu_devices.py)."""
  from moto_jax.xla_cpu import allocator, cpu_devices

  allocator.reexec()
  cpu_devices.split()
