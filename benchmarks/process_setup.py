"""Process setup shared by the benchmarks; `start` runs before jax is imported."""
import os


def start() -> None:
  """As launch.main does: restart once with the allocator of moto_jax/allocator.py (MOTO_MALLOC=off:
  not), and split the CPU into one XLA device per core unless XLA_FLAGS already sets a count."""
  from moto_jax import allocator
  allocator.reexec()
  flags = os.environ.get('XLA_FLAGS', '')
  if 'xla_force_host_platform_device_count' not in flags:
    os.environ['XLA_FLAGS'] = f'{flags} --xla_force_host_platform_device_count={os.cpu_count()}'.strip()
