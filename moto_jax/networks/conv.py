"""Image encoder and decoder for 64 x 64 x 3 observations.

Encoder (DreamerV2): `layers` convolutions, kernel `kernel`, stride 2, VALID padding, depth
`depth * 2**i`; 64 -> 31 -> 14 -> 6 -> 2 for the defaults, flattened to [..., 2 * 2 * 8 * depth].

Decoder: a dense layer to a [64 / 2**layers]^2 x (depth * 2**(layers-1)) map, then `layers`
2x upsampling steps halving the depth, the last one to 3 channels. Two kinds:

* 'transpose': `ConvTranspose(kernel, stride 2, SAME)` (DreamerV2/V3 style).
* 'subpixel': `Conv(subpixel_kernel, stride 1, SAME)` to 4x the channels, then depth-to-space.
  With subpixel_kernel = 3 this spans every function of a stride-2 kernel-4 transposed
  convolution, and it runs an order of magnitude faster on XLA:CPU, whose transposed-convolution
  gradients are slow.

Every hidden layer is followed by LayerNorm (over channels) and SiLU.

`impl` chooses how each convolution is computed, with the same parameters and outputs:
'xla' is `lax.conv_general_dilated` (flax `nn.Conv`); 'patches' gathers the kernel's k*k shifted
(strided) slices of the input into one [N, H', W', k*k*C] array and multiplies it by the kernel as a
[k*k*C, C'] matrix. XLA:CPU runs convolutions with few channels on large maps memory-bound; the
patch form turns them into one matrix product (BUILD_NOTES, "Where an update's time goes").
"""
import chex
import flax.linen as nn
import jax
import jax.numpy as jnp


def preprocess(image: jax.Array) -> jax.Array:
  """uint8 [..., H, W, 3] in [0, 255] -> float32 in [-0.5, 0.5]."""
  return image.astype(jnp.float32) / 255.0 - 0.5


def depth_to_space(x: jax.Array, block: int) -> jax.Array:
  """[N, H, W, C * b * b] -> [N, H * b, W * b, C] (the channel order of tf.nn.depth_to_space)."""
  n, h, w, c = x.shape
  out = c // (block * block)
  x = x.reshape(n, h, w, block, block, out)
  x = x.transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(n, h * block, w * block, out)


IMPLS = ('xla', 'patches')


def conv_patches(x: jax.Array, kernel: jax.Array, stride: int, padding: str) -> jax.Array:
  """The convolution of `nn.Conv` (NHWC input, HWIO kernel, no dilation) as patches @ kernel.

  Args: x [N, H, W, C]; kernel [kh, kw, C, C']; padding 'VALID' or 'SAME' (as XLA pads: the extra
  row/column at the end). Returns [N, H', W', C'].
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
  cols = [x[:, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride, :]
          for i in range(kh) for j in range(kw)]
  return jnp.concatenate(cols, -1) @ kernel.reshape(kh * kw * cin, cout)


class Conv(nn.Module):
  """`nn.Conv` (same parameter names, shapes and initialisers) with a choice of `impl`."""
  features: int
  kernel_size: tuple[int, int]
  strides: tuple[int, int] = (1, 1)
  padding: str = 'SAME'
  impl: str = 'xla'

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.impl == 'xla':
      return self._xla(x)
    if self.impl != 'patches':
      raise ValueError(f'conv impl={self.impl!r}; expected one of {IMPLS}')
    kernel, bias = self._params(x.shape[-1])
    if self.strides[0] != self.strides[1]:
      raise ValueError(f'strides={self.strides}: the patch form needs equal strides')
    return conv_patches(x, kernel, self.strides[0], self.padding) + bias

  def _params(self, cin: int):
    kernel = self.param('kernel', nn.initializers.lecun_normal(), tuple(self.kernel_size) + (cin, self.features))
    bias = self.param('bias', nn.initializers.zeros_init(), (self.features,))
    return kernel, bias

  def _xla(self, x):
    kernel, bias = self._params(x.shape[-1])
    y = jax.lax.conv_general_dilated(x, kernel, self.strides, self.padding,
                                     dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    return y + bias


class Encoder(nn.Module):
  """uint8 image [..., 64, 64, 3] -> embedding float32 [..., E]."""
  depth: int = 48
  kernel: int = 4
  layers: int = 4
  impl: str = 'xla'             # 'xla' | 'patches' (see the module docstring)

  @nn.compact
  def __call__(self, image: jax.Array) -> jax.Array:
    chex.assert_type(image, jnp.uint8)
    lead = image.shape[:-3]
    x = preprocess(image.reshape((-1,) + image.shape[-3:]))
    for i in range(self.layers):
      x = Conv(self.depth * 2 ** i, (self.kernel, self.kernel), strides=(2, 2), padding='VALID',
               impl=self.impl, name=f'conv{i}')(x)
      x = nn.silu(nn.LayerNorm(name=f'norm{i}')(x))
    return x.reshape(lead + (-1,))


class Decoder(nn.Module):
  """Feature [..., F] -> mean image float32 [..., 64, 64, 3], in the [-0.5, 0.5] scale."""
  kind: str = 'transpose'       # 'transpose' | 'subpixel'
  depth: int = 48
  kernel: int = 4
  layers: int = 4
  subpixel_kernel: int = 3
  image_shape: tuple[int, int, int] = (64, 64, 3)
  impl: str = 'xla'             # of the 'subpixel' kind's convolutions: 'xla' | 'patches'

  @nn.compact
  def __call__(self, feat: jax.Array) -> jax.Array:
    if self.kind not in ('transpose', 'subpixel'):
      raise ValueError(f'Unknown decoder kind {self.kind!r}.')
    height, width, channels = self.image_shape
    scale = 2 ** self.layers
    if height % scale or width % scale:
      raise ValueError(f'Image shape {self.image_shape} is not divisible by 2**layers = {scale}.')
    lead = feat.shape[:-1]
    x = feat.reshape((-1, feat.shape[-1]))
    start_depth = self.depth * 2 ** (self.layers - 1)
    x = nn.Dense(height // scale * width // scale * start_depth, name='project')(x)
    x = x.reshape((-1, height // scale, width // scale, start_depth))
    x = nn.silu(nn.LayerNorm(name='project_norm')(x))
    for i in range(self.layers):
      last = i == self.layers - 1
      out = channels if last else self.depth * 2 ** (self.layers - 2 - i)
      if self.kind == 'transpose':
        x = nn.ConvTranspose(out, (self.kernel, self.kernel), strides=(2, 2), padding='SAME',
                             name=f'conv{i}')(x)
      else:
        k = self.subpixel_kernel
        x = Conv(out * 4, (k, k), strides=(1, 1), padding='SAME', impl=self.impl, name=f'conv{i}')(x)
        x = depth_to_space(x, 2)
      if not last:
        x = nn.silu(nn.LayerNorm(name=f'norm{i}')(x))
    return x.reshape(lead + self.image_shape)
