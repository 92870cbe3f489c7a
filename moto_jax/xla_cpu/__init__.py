"""What makes XLA:CPU fast, apart from the model: a GPU or TPU user may ignore this folder.

* `allocator`: restarts a job once with jemalloc (or glibc's huge pages), which keeps XLA:CPU's
  per-update buffers mapped.
* `cpu_devices`: splits the CPU into one XLA device per core, so the data-parallel mesh uses them all.
* `conv_forms`: convolutions computed as matrix products (patches, stride phases), with custom
  gradients; XLA:CPU's own kernel gradients of strided convolutions are slow.
* `precision`: products with factors rounded to bfloat16 and float32 accumulation.
* `data_parallel`: per-device scans of the RSSM under the data-parallel mesh.

On GPU/TPU the networks take XLA's own forms (`impl='auto'`), `cpu_devices` and `allocator` do nothing.
"""
