"""Products at a chosen precision: factors rounded to `dtype`, float32 accumulation.

`matmul(x, w, dtype)` is `x @ w` for float32 x [..., K] and w [K, N]; with dtype float32 it is
exactly that. With bfloat16 both factors are rounded to bfloat16 and multiplied with float32
accumulation and a float32 result, forward and backward (the incoming gradient is rounded too),
as in DreamerV3's default mixed precision; `matmul(x, w, dtype, lhs)` multiplies lhs(x) for a
linear `lhs` (a convolution's patch gather). `rounded(op, x, w, dtype)` does the same for any
bilinear op (XLA's convolutions). `model.compute_dtype` applies them to the image encoder's and
decoder's products (conv.py), most of the update's arithmetic; parameters, optimizer state,
normalisation, losses and everything elementwise stay float32.

Why the gradient is written out: XLA:CPU hands a bfloat16 product to its fast kernels (YNNPACK,
using AMX or AVX512-BF16 where the CPU has them) only when the left factor is [M, K] and the
right [K, N], both row-major. Autodiff's kernel gradient x^T @ g and input gradient g @ w^T
contract over a leading dimension or read a transposed (column-major) operand, and XLA then
computes them in float32 after converting both factors. So the backward products here are
arranged as g @ (w^T) and (x^T) @ g or g^T @ x (-> dw^T), whichever transposes the narrower of x
and g, with the transposed factor materialised row-major (`_row_major_transpose`).
"""

import functools

import jax
import jax.numpy as jnp

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def resolve(name: str):
  """A config's compute dtype name -> the jnp dtype."""
  if name not in DTYPES:
    raise ValueError(f'compute dtype {name!r}; expected one of {tuple(DTYPES)}')
  return DTYPES[name]


def _row_major_transpose(a: jax.Array) -> jax.Array:
  """a.T [N, M] as a row-major array. A plain transpose feeding a product is a layout change
  that XLA folds into the product (as a column-major operand). Written as a transpose of a's rows
  in blocks, [M / b, b, N] -> [N, M / b, b], it is computed and stored row-major, at the speed of
  XLA's transposes (faster than the concatenation of two halves' transposes it replaced).
  Rows not divisible by 2: that concatenation."""
  m, n = a.shape
  for b in (8, 4, 2):
    if m % b == 0:
      return a.reshape(m // b, b, n).transpose(2, 0, 1).reshape(n, m)
  if n < 2:
    return a.T
  return jnp.concatenate([a[:, : n // 2].T, a[:, n // 2 :].T], 0)


def _dot(a, b):
  return jnp.dot(a, b, preferred_element_type=jnp.float32)


def _identity(x):
  return x


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 3))
def _mixed(lhs, x, w, dtype):
  return _mixed_fwd(lhs, x, w, dtype)[0]


def _mixed_fwd(lhs, x, w, dtype):
  xl = lhs(x.astype(dtype))
  xl = xl.reshape(-1, xl.shape[-1])
  wl = w.astype(dtype)
  x_like = jnp.zeros((0,) + x.shape, x.dtype)  # carries x's shape to the backward pass
  return _dot(xl, wl), (xl, wl, x_like)


def _mixed_bwd(lhs, dtype, res, g):
  xl, wl, x_like = res
  dxl, dw = product_grads(xl, wl, g, dtype)  # float32
  if lhs is _identity:
    return dxl.reshape(x_like.shape[1:]), dw
  spec = jax.ShapeDtypeStruct(x_like.shape[1:], jnp.float32)
  (dx,) = jax.linear_transpose(lhs, spec)(dxl.reshape(jax.eval_shape(lhs, spec).shape))
  return dx, dw


_mixed.defvjp(_mixed_fwd, _mixed_bwd)


def product_grads(x: jax.Array, w: jax.Array, g: jax.Array, dtype=jnp.float32):
  """The gradients (dx, dw) of `x @ w` (x [M, K], w [K, N]) given the output's gradient g [M, N],
  float32. With dtype float32 they are autodiff's `g @ w.T` and `x.T @ g`; otherwise the factors
  are rounded to `dtype` and the products arranged as the module doc says."""
  if jnp.dtype(dtype) == jnp.float32:
    return g @ w.T, x.T @ g
  xl, wl, gl = x.astype(dtype), w.astype(dtype), g.astype(dtype)
  dx = _dot(gl, _row_major_transpose(wl))  # [M, N] @ [N, K]
  if x.shape[-1] < g.shape[-1]:  # transpose the narrower factor
    return dx, _dot(_row_major_transpose(xl), gl)  # [K, M] @ [M, N]
  # ([N, M] @ [M, K]).T; the final transpose is materialised too: XLA rewrites a plain
  # transpose of a product as the product of the transposed factors, the unsupported form.
  dw = _row_major_transpose(_dot(_row_major_transpose(gl), xl))
  return dx, dw


def matmul(x: jax.Array, w: jax.Array, dtype=jnp.float32, lhs=None) -> jax.Array:
  """lhs(x) [..., K] @ w [K, N] -> float32 [..., N], the factors rounded to `dtype` (see module doc).

  `lhs`: a linear map applied to x first (conv.py gathers a convolution's patch matrix with it),
  default none. In bfloat16 it runs on the rounded x (half the memory traffic), and its transpose
  sums the left factor's gradient back onto x in float32. `lhs` must be hashable (a module-level
  function or a functools.partial of one)."""
  if jnp.dtype(dtype) == jnp.float32:
    return (x if lhs is None else lhs(x)) @ w
  lhs = _identity if lhs is None else lhs
  lead = jax.eval_shape(lhs, x).shape[:-1]
  return _mixed(lhs, x, w, dtype).reshape(lead + (w.shape[-1],))


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 3))
def _rounded(op, x, w, dtype):
  return _rounded_fwd(op, x, w, dtype)[0]


def _rounded_fwd(op, x, w, dtype):
  xl, wl = x.astype(dtype), w.astype(dtype)
  return op(xl, wl, jnp.float32), (xl, wl)


def _rounded_bwd(op, dtype, res, g):
  xl, wl = res
  # The op's own gradient at the rounded factors and the rounded gradient, each exact in float32
  # (a vjp at the low-precision factors would round the gradients it returns to that precision).
  f32 = lambda a: a.astype(jnp.float32)
  _, vjp = jax.vjp(lambda a, b: op(a, b, jnp.float32), f32(xl), f32(wl))
  return vjp(f32(g.astype(dtype)))


_rounded.defvjp(_rounded_fwd, _rounded_bwd)


def rounded(op, x: jax.Array, w: jax.Array, dtype=jnp.float32) -> jax.Array:
  """op(x, w, out_dtype) for a bilinear `op` taking its output dtype (e.g. a convolution with
  `preferred_element_type`), its factors rounded to `dtype`, forward and backward, float32 out.
  With dtype float32: op(x, w, float32), plain autodiff. `op` must be hashable (a module-level
  function or a functools.partial of one)."""
  if jnp.dtype(dtype) == jnp.float32:
    return op(x, w, jnp.float32)
  return _rounded(op, x, w, dtype)
