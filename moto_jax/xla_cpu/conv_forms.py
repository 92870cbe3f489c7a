"""How each convolution of conv.py is computed: the forms its `impl` chooses, as pure functions of
(x, kernel) with the parameters and function of `lax.conv_general_dilated` / `lax.conv_transpose`.

* `conv_xla`: XLA's own convolution, its factors rounded to the compute dtype (precision.py).
* `conv_stride2_phases`: a stride-2 VALID convolution as a stride-1 one on the input's 2 x 2
  phases (space-to-depth).
* `conv_transpose_phases`: a stride-2 SAME transposed convolution through its 4 output phases,
  without inserted zeros; with `patches`, as matrix products in one of `TRANSPOSE_FORMS`.
* `conv_patches`: the kernel's shifted (strided) slices gathered into one patch matrix times
  the kernel as a matrix; `conv_shifted_outputs`: the input times every tap, then shifted sums.
Their gradients are matrix products or stride-1 convolutions (custom VJPs where autodiff's
were slow on XLA:CPU, 1-10 GFLOP/s at the paper's sizes).
"""

import functools

import chex
import jax
import jax.numpy as jnp

from moto_jax.xla_cpu import precision


def depth_to_space(x: jax.Array, block: int) -> jax.Array:
  """[N, H, W, C * b * b] -> [N, H * b, W * b, C] (the channel order of tf.nn.depth_to_space)."""
  n, h, w, c = x.shape
  out = c // (block * block)
  x = x.reshape(n, h, w, block, block, out)
  x = x.transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(n, h * block, w * block, out)


def space_to_depth(x: jax.Array, block: int) -> jax.Array:
  """[N, H * b, W * b, C] -> [N, H, W, b * b * C]; channel (r, s, c) holds x[b*i + r, b*j + s, c]."""
  n, h, w, c = x.shape
  x = x.reshape(n, h // block, block, w // block, block, c)
  return x.transpose(0, 1, 3, 2, 4, 5).reshape(n, h // block, w // block, block * block * c)


def _xla_conv(x, kernel, out_dtype, *, padding, strides):
  return jax.lax.conv_general_dilated(
    x, kernel, strides, padding, dimension_numbers=('NHWC', 'HWIO', 'NHWC'), preferred_element_type=out_dtype
  )


def xla_conv_transpose(x, kernel, out_dtype):
  return jax.lax.conv_transpose(
    x, kernel, (2, 2), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'), preferred_element_type=out_dtype
  )


def conv_xla(x: jax.Array, kernel: jax.Array, padding, strides=(1, 1), dtype=jnp.float32) -> jax.Array:
  """XLA's convolution, NHWC input and HWIO kernel (flax's layout); the factors rounded to `dtype`,
  float32 accumulation and output (`precision.rounded`)."""
  op = functools.partial(_xla_conv, padding=padding, strides=tuple(strides))
  return precision.rounded(op, x, kernel, dtype)


def conv_stride2_phases(x: jax.Array, kernel: jax.Array, patches: bool = False, dtype=jnp.float32) -> jax.Array:
  """`conv_general_dilated(x, kernel, strides 2, 'VALID')` for an even kernel, as one stride-1 conv.

  y[o] = sum_k x[2o + k] w[k] = sum_{t, r} X[o + t, r] w[2t + r] with X = space_to_depth(x, 2):
  a (k/2) x (k/2) stride-1 convolution over the 4 input phases. The same function; its gradients
  are stride-1 convolutions too (the strided form's input gradient is an input-dilated
  convolution, which XLA:CPU computes on the inserted zeros). Args: x [N, H, W, C]; kernel [k, k, C, C'].
  """
  k, k2, cin, cout = kernel.shape
  if k != k2 or k % 2:
    raise ValueError(f'conv_stride2_phases: kernel {kernel.shape[:2]} must be square with an even size')
  _, h, w, _ = x.shape
  ho, wo = (h - k) // 2 + 1, (w - k) // 2 + 1
  x = x[:, : 2 * ho + k - 2, : 2 * wo + k - 2]  # the rows and columns the strided conv reads
  t = k // 2
  v = kernel.reshape(t, 2, t, 2, cin, cout).transpose(0, 2, 1, 3, 4, 5).reshape(t, t, 4 * cin, cout)
  x = space_to_depth(x, 2)
  return conv_patches(x, v, 1, 'VALID', dtype) if patches else conv_xla(x, v, 'VALID', dtype=dtype)


# How `conv_transpose_phases` computes its phases as matrix products (its docstring).
TRANSPOSE_FORMS = ('direct', 'shifted', 'padded-patches')


def conv_transpose_phases(
  x: jax.Array, kernel: jax.Array, patches: bool = False, dtype=jnp.float32, form: str = 'direct'
) -> jax.Array:
  """`lax.conv_transpose(x, kernel, strides 2, 'SAME')` (flax `nn.ConvTranspose`) for an even kernel.

  Output row 2i + a (phase a) is sum_t x[i + lo_a + t] w[p_a + 2t], t < k/2: each phase is a
  (k/2)-tap stride-1 convolution of x. Without patches, all four (row, column) phases come from
  one stride-1 convolution to 4 C' channels, then depth-to-space. The same function without the
  transposed form's inserted zeros (4x its FLOPs on XLA:CPU). Args: x [N, H, W, C]; kernel [k, k, C, C'];
  patches: compute the stride-1 convolution as matrix products, whose gradients are matrix
  products too; form: how, with patches (TRANSPOSE_FORMS). Both 'direct' (the default) and
  'shifted' multiply x, at its own H x W positions, by every tap of every phase ([C, k*k*C']);
  'direct' adds each tap's product straight into its output phase (`_transpose_direct`),
  'shifted' sums the phases' taps with `conv_shifted_outputs` (zero padding put around the
  products) and then interleaves the phases. 'padded-patches' (the form before) gathers patch
  matrices from x padded by one: (H + 1) x (W + 1) positions for k = 4, 56 % more FLOPs at 4 x 4.
  Measured per layer, forward and both gradients: 'direct' and 'shifted'
  1.3-1.4x faster than 'padded-patches' over the `paper` decoder's layers, within ~10 % of
  each other; 'direct' needs the least memory in the whole update.
  """
  k, k2, cin, cout = kernel.shape
  if k != k2 or k % 2:
    raise ValueError(f'conv_transpose_phases: kernel {kernel.shape[:2]} must be square with an even size')
  t, pad = k // 2, k // 2  # lax pads the dilated input by k/2 for SAME
  first = [(pad - a) % 2 for a in (0, 1)]  # first kernel tap of phase a
  lo = [(a + first[a] - pad) // 2 for a in (0, 1)]  # input offset of that tap
  before, after = -min(lo), max(lo) + t - 1
  # v[t, u, c, (a, b, c')] = w[first[a] + 2t, first[b] + 2u, c, c'].
  taps = [kernel[first[a] :: 2] for a in (0, 1)]  # per row phase: [t, k, C, C']
  v = jnp.stack([jnp.stack([taps[a][:, first[b] :: 2] for b in (0, 1)], 3) for a in (0, 1)], 3)
  v = v.reshape(t, t, cin, 4 * cout)
  if patches:
    if form == 'direct':
      return _transpose_direct(x, v, tuple(lo), dtype)
    if form == 'shifted':
      z = conv_shifted_outputs(x, v, dtype, (before, after))
    elif form == 'padded-patches':
      z = conv_patches(jnp.pad(x, ((0, 0), (before, after), (before, after), (0, 0))), v, 1, 'VALID', dtype)
    else:
      raise ValueError(f'conv_transpose_phases: form={form!r}; expected one of {TRANSPOSE_FORMS}')
  else:
    z = conv_xla(x, v, ((before, after), (before, after)), dtype=dtype)  # [N, H + 1, W + 1, 4 C'] for k = 4
  n, h, w, _ = x.shape
  return _interleave_phases(z, tuple(o + before for o in lo), h, w)


def _shift(a: jax.Array, s: int, axis: int, size: int | None = None) -> jax.Array:
  """out[i] = a[i + s] along `axis` for i < size (default: a's own size), zero where i + s is
  outside a."""
  n = a.shape[axis]
  size = n if size is None else size
  lo, hi = max(s, 0), min(s + size, n)  # the part of a that lands in range
  if s == 0 and size == n:
    return a
  if hi <= lo:
    return jnp.zeros(a.shape[:axis] + (size,) + a.shape[axis + 1 :], a.dtype)
  pads = [(0, 0)] * a.ndim
  pads[axis] = (lo - s, size - (lo - s) - (hi - lo))
  return jnp.pad(jax.lax.slice_in_dim(a, lo, hi, axis=axis), pads)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _transpose_direct(x, v, lo, dtype):
  """The transposed convolution from U = x @ [C, t*t*4C'] (every tap of every phase at x's own
  positions): phase (a, b)'s output at (i, j) sums U[i + lo_a + ti, j + lo_b + ui, (ti, ui, a, b)]
  over the taps, zero outside x (col2im). Each element of U is read once, straight into the
  interleaved output; v [t, t, C, (a, b, C')] as in `conv_transpose_phases`."""
  return _transpose_direct_fwd(x, v, lo, dtype)[0]


def _transpose_direct_fwd(x, v, lo, dtype):
  n, h, w, _ = x.shape
  t, cout = v.shape[0], v.shape[-1] // 4
  u = _tap_products(x, v, dtype).reshape(n, h, w, t, t, 2, 2, cout)
  phase = lambda a, b: sum(
    _shift(_shift(u[:, :, :, ti, ui, a, b], lo[a] + ti, 1), lo[b] + ui, 2) for ti in range(t) for ui in range(t)
  )
  y = jnp.stack([jnp.stack([phase(a, b) for b in (0, 1)], 3) for a in (0, 1)], 2)  # [N, h, 2, w, 2, C']
  return y.reshape(n, 2 * h, 2 * w, cout), (x, v)


def _transpose_direct_bwd(lo, dtype, res, dy):
  x, v = res
  n, h, w, cin = x.shape
  t, cout = v.shape[0], v.shape[-1] // 4
  dy = dy.astype(dtype).reshape(n, h, 2, w, 2, cout)  # rounded where the products would round it
  du = jnp.stack(
    [
      _shift(_shift(dy[:, :, a, :, b], -(lo[a] + ti), 1), -(lo[b] + ui), 2)
      for ti in range(t)
      for ui in range(t)
      for a in (0, 1)
      for b in (0, 1)
    ],
    3,
  )
  return _tap_product_grads(x, v, du, dtype)


_transpose_direct.defvjp(_transpose_direct_fwd, _transpose_direct_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _interleave_phases(z: jax.Array, offsets: tuple[int, int], h: int, w: int) -> jax.Array:
  """[N, H', W', 4 C'] (channels (a, b, c')) -> [N, 2h, 2w, C'] with output (2i + a, 2j + b) =
  z[i + offsets[a], j + offsets[b], (a, b)]. Its gradient puts each phase in place with one pad
  per phase, stacked: autodiff of the slices pads every phase to the whole of z and adds the four
  (at `paper` sizes ~4x the memory traffic)."""
  n, cout = z.shape[0], z.shape[-1] // 4
  z = z.reshape(z.shape[:3] + (2, 2, cout))
  rows = [
    jnp.stack([z[:, offsets[a] : offsets[a] + h, offsets[b] : offsets[b] + w, a, b] for b in (0, 1)], 3) for a in (0, 1)
  ]  # per a: [N, h, w, 2(b), C']
  return jnp.stack(rows, 2).reshape(n, 2 * h, 2 * w, cout)  # from [N, h, 2(a), w, 2(b), C']


def _interleave_fwd(z, offsets, h, w):
  return _interleave_phases(z, offsets, h, w), None


def _interleave_bwd(offsets, h, w, _, dy):
  n, cout = dy.shape[0], dy.shape[-1]
  extra = max(offsets)  # z has h + extra rows, w + extra columns
  dy = dy.reshape(n, h, 2, w, 2, cout)
  pieces = [
    jnp.pad(dy[:, :, a, :, b], ((0, 0), (offsets[a], extra - offsets[a]), (offsets[b], extra - offsets[b]), (0, 0)))
    for a in (0, 1)
    for b in (0, 1)
  ]
  return (jnp.stack(pieces, 3).reshape(n, h + extra, w + extra, 4 * cout),)


_interleave_phases.defvjp(_interleave_fwd, _interleave_bwd)


def conv_patches(x: jax.Array, kernel: jax.Array, stride: int, padding: str, dtype=jnp.float32) -> jax.Array:
  """The convolution of `nn.Conv` (NHWC input, HWIO kernel, no dilation) as patches @ kernel.

  Args: x [N, H, W, C]; kernel [kh, kw, C, C']; padding 'VALID' or 'SAME' (as XLA pads: the extra
  row/column at the end); dtype: the product's precision (`precision.matmul`, which in bfloat16
  gathers the patch matrix from the rounded input and sums its gradient back in float32; summed
  in bfloat16 it was slower). Returns [N, H', W', C'].
  """
  kh, kw, cin, cout = kernel.shape
  chex.assert_rank(x, 4)
  if padding == 'SAME':

    def pads(size, k):
      out = -(-size // stride)
      total = max((out - 1) * stride + k - size, 0)
      return total // 2, total - total // 2

    x = jnp.pad(x, ((0, 0), pads(x.shape[1], kh), pads(x.shape[2], kw), (0, 0)))
  elif padding != 'VALID':
    raise ValueError(f'padding={padding!r}; expected VALID or SAME')
  _, h, w, _ = x.shape
  ho, wo = (h - kh) // stride + 1, (w - kw) // stride + 1
  gather = functools.partial(_gather_patches, kh=kh, kw=kw, stride=stride, ho=ho, wo=wo)
  return precision.matmul(x, kernel.reshape(kh * kw * cin, cout), dtype, lhs=gather)


def _gather_patches(x, *, kh, kw, stride, ho, wo):
  """[N, H, W, C] -> the patch matrix [N, ho, wo, kh*kw*C] (taps in (i, j) order, then channels)."""
  cols = [
    x[:, i : i + stride * (ho - 1) + 1 : stride, j : j + stride * (wo - 1) + 1 : stride, :]
    for i in range(kh)
    for j in range(kw)
  ]
  return jnp.concatenate(cols, -1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv_shifted_outputs(
  x: jax.Array, kernel: jax.Array, dtype=jnp.float32, pad: tuple[int, int] = (0, 0)
) -> jax.Array:
  """A stride-1 convolution as one matrix product on the input, then shifted sums.

  U = x @ [C, kh*kw*C'] holds every tap's contribution at every input position; output (i, j)
  sums tap (a, b)'s C' channels of U at (i + a, j + b). Cheaper in memory than `conv_patches`
  when C' < C.
  `pad` = (before, after): zero rows and columns around x, as in `conv(jnp.pad(x), kernel,
  'VALID')`; they are put around U instead (x @ W of a zero row is zero; the (i + a, j + b)
  above index the padded U), so the product has exactly x's positions.
  Args: x [N, H, W, C]; kernel [kh, kw, C, C']; dtype: the products' precision (precision.py).
  Returns [N, H + sum(pad) - kh + 1, W + sum(pad) - kw + 1, C']. Its gradient is written out
  (`_shifted_bwd`).
  """
  return _shifted_outputs(x, kernel, dtype, pad)


def _shifted_outputs(x, kernel, dtype, pad):
  kh, kw, cin, cout = kernel.shape
  n, h, w, _ = x.shape
  ho, wo = h + sum(pad) - kh + 1, w + sum(pad) - kw + 1
  u = _tap_products(x, kernel, dtype).reshape(n, h, w, kh, kw, cout)
  u = jnp.pad(u, ((0, 0), pad, pad, (0, 0), (0, 0), (0, 0)))
  return sum(u[:, a : a + ho, b : b + wo, a, b] for a in range(kh) for b in range(kw))


def _tap_matrix(kernel: jax.Array) -> jax.Array:
  """[kh, kw, C, C'] -> [C, kh*kw*C']: every tap's kernel side by side."""
  kh, kw, cin, cout = kernel.shape
  return kernel.transpose(2, 0, 1, 3).reshape(cin, kh * kw * cout)


def _tap_products(x: jax.Array, kernel: jax.Array, dtype) -> jax.Array:
  """U = x @ `_tap_matrix(kernel)`: every tap's product at x's own positions, [N, H, W, kh*kw*C']."""
  return precision.matmul(x, _tap_matrix(kernel), dtype)


def _tap_product_grads(x: jax.Array, kernel: jax.Array, du: jax.Array, dtype) -> tuple[jax.Array, jax.Array]:
  """The gradients (of x, of the kernel) of `_tap_products` for dU = `du` [N, H, W, kh*kw*C']."""
  kh, kw, cin, cout = kernel.shape
  dx, dk = precision.product_grads(x.reshape(-1, cin), _tap_matrix(kernel), du.reshape(-1, kh * kw * cout), dtype)
  return dx.reshape(x.shape), dk.reshape(cin, kh, kw, cout).transpose(1, 2, 0, 3)


def _shifted_fwd(x, kernel, dtype, pad):
  return _shifted_outputs(x, kernel, dtype, pad), (x, kernel)


def _shifted_bwd(dtype, pad, res, dz):
  """dU (every tap's shifted copy of dz at x's positions, stacked on channels), then two matrix
  products. Autodiff of the shifted sums instead adds kh*kw scattered arrays of U's size: 3x
  slower on XLA:CPU."""
  x, kernel = res
  kh, kw = kernel.shape[:2]
  _, h, w, _ = x.shape
  dz = dz.astype(dtype)  # rounded where the products would round it (no-op in float32)
  # Tap (a, b) at x's position (i, j) (U padded by pad[0] before) fed output (i + pad[0] - a, ...).
  du = jnp.stack([_shift(_shift(dz, pad[0] - a, 1, h), pad[0] - b, 2, w) for a in range(kh) for b in range(kw)], 3)
  return _tap_product_grads(x, kernel, du, dtype)


conv_shifted_outputs.defvjp(_shifted_fwd, _shifted_bwd)
