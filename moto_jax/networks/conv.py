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
* 'xla': `lax.conv_general_dilated` / `lax.conv_transpose` (flax `nn.Conv` / `nn.ConvTranspose`).
* 'phases': a stride-2 convolution as a stride-1 one on the input's 2 x 2 phases (space-to-depth),
  a transposed one as a stride-1 convolution to its 4 output phases (depth-to-space): no
  inserted zeros and no dilated convolutions in the gradients.
* 'patches': the 'phases' forms for the transposed and the stride-2 VALID even-kernel
  convolutions, and every convolution as matrix products: the kernel's k*k shifted (strided) slices of the input gathered into one
  [N, H', W', k*k*C] array times the kernel as a [k*k*C, C'] matrix (`conv_patches`); the
  transposed ones as the input times every tap at once, each tap's product added into its
  output phase (`conv_transpose_phases`, form 'direct').
The forms themselves are pure functions in conv_forms.py.
XLA:CPU computes the kernel gradients of strided and transposed convolutions at 2-10 GFLOP/s at
the paper's sizes; as matrix products the `paper` update ran 9.8x faster. At the `small` sizes its
own convolutions are as fast, but for the encoder's first layer.
"""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from moto_jax.networks import layers
from moto_jax.xla_cpu import precision
from moto_jax.xla_cpu.conv_forms import (
  conv_patches,
  conv_stride2_phases,
  conv_transpose_phases,
  conv_xla,
  depth_to_space,
  xla_conv_transpose,
)


def preprocess(image: jax.Array) -> jax.Array:
  """uint8 [..., H, W, 3] in [0, 255] -> float32 in [-0.5, 0.5]."""
  return image.astype(jnp.float32) / 255.0 - 0.5


IMPLS = ('xla', 'patches', 'phases')


def resolve_impl(impl: str) -> str:
  """A config's impl: one of IMPLS, or 'auto' = 'patches' on a CPU backend (measured there) and
  'xla' on GPU/TPU (where cuDNN-style kernels run the convolutions and their gradients well)."""
  if impl == 'auto':
    return 'patches' if jax.default_backend() == 'cpu' else 'xla'
  if impl not in IMPLS:
    raise ValueError(f"conv impl={impl!r}; expected 'auto' or one of {IMPLS}")
  return impl


def _kernel_and_bias(module: nn.Module, kernel_shape: tuple, features: int):
  """The 'kernel' and 'bias' parameters of flax's `nn.Conv` / `nn.ConvTranspose` (same initialisers)."""
  return (
    module.param('kernel', nn.initializers.lecun_normal(), kernel_shape),
    module.param('bias', nn.initializers.zeros_init(), (features,)),
  )


class Conv(nn.Module):
  """`nn.Conv` (same parameter names, shapes and initialisers) with a choice of `impl`."""

  features: int
  kernel_size: tuple[int, int]
  strides: tuple[int, int] = (1, 1)
  padding: str = 'SAME'
  impl: str = 'xla'
  dtype: str = 'float32'  # precision of the products ('float32' | 'bfloat16'; precision.py)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.impl not in IMPLS:
      raise ValueError(f'conv impl={self.impl!r}; expected one of {IMPLS}')
    strides = tuple(self.strides)
    if self.impl == 'phases' and strides != (1, 1) and (strides != (2, 2) or self.padding != 'VALID'):
      raise ValueError(
        f"conv impl='phases' computes stride-2 VALID convolutions; got strides={self.strides}, padding={self.padding!r}"
      )
    if self.impl == 'patches' and strides[0] != strides[1]:
      raise ValueError(f'strides={self.strides}: the patch form needs equal strides')
    kernel, bias = _kernel_and_bias(self, tuple(self.kernel_size) + (x.shape[-1], self.features), self.features)
    kh, kw = self.kernel_size
    dtype = precision.resolve(self.dtype)
    if self.impl == 'patches' and strides == (2, 2) and self.padding == 'VALID' and kh == kw and kh % 2 == 0:
      # The encoder's layers: the input's 2 x 2 phases, then patches of k/2 x k/2 unit-stride slices.
      # Its input gradient sums (k/2)^2 shifted copies instead of k^2 strided ones (10 % faster
      # at paper sizes).
      y = conv_stride2_phases(x, kernel, patches=True, dtype=dtype)
    elif self.impl == 'patches':
      y = conv_patches(x, kernel, strides[0], self.padding, dtype)
    elif self.impl == 'phases' and strides == (2, 2):
      y = conv_stride2_phases(x, kernel, dtype=dtype)
    else:  # 'xla', or 'phases' at stride 1 (the same)
      y = conv_xla(x, kernel, self.padding, strides, dtype)
    return y + bias


class ConvTranspose(nn.Module):
  """`nn.ConvTranspose(features, kernel_size, strides=(2, 2), padding='SAME')` (same parameter names,
  shapes and initialisers) computed by `impl`: 'xla' (`lax.conv_transpose`), 'phases'
  (`conv_transpose_phases`) or 'patches' (its phases as matrix products)."""

  features: int
  kernel_size: tuple[int, int]
  impl: str = 'xla'
  dtype: str = 'float32'  # precision of the products ('float32' | 'bfloat16'; precision.py)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.impl not in IMPLS:
      raise ValueError(f'transposed conv impl={self.impl!r}; expected one of {IMPLS}')
    kernel, bias = _kernel_and_bias(self, tuple(self.kernel_size) + (x.shape[-1], self.features), self.features)
    dtype = precision.resolve(self.dtype)
    if self.impl == 'xla':
      y = precision.rounded(xla_conv_transpose, x, kernel, dtype)
    else:
      y = conv_transpose_phases(x, kernel, patches=self.impl == 'patches', dtype=dtype)
    return y + bias


class Encoder(nn.Module):
  """uint8 image [..., 64, 64, 3] -> embedding float32 [..., E]."""

  depth: int = 48
  kernel: int = 4
  layers: int = 4
  impl: str = 'xla'  # 'xla' | 'patches' | 'phases' (see the module docstring)
  dtype: str = 'float32'  # precision of the products ('float32' | 'bfloat16'; precision.py)

  @nn.compact
  def __call__(self, image: jax.Array) -> jax.Array:
    chex.assert_type(image, jnp.uint8)
    lead = image.shape[:-3]
    x = preprocess(image.reshape((-1,) + image.shape[-3:]))
    for i in range(self.layers):
      x = Conv(
        self.depth * 2**i,
        (self.kernel, self.kernel),
        strides=(2, 2),
        padding='VALID',
        impl=self.impl,
        dtype=self.dtype,
        name=f'conv{i}',
      )(x)
      x = nn.silu(nn.LayerNorm(name=f'norm{i}')(x))
      if self.impl == 'patches' and i < self.layers - 1:
        # The next layer gathers patches from x: computed once rather than in each of its slices
        # (the `paper` update 1-4 % faster).
        x = layers.computed_once(x, self.variables['params'][f'norm{i}']['scale'][0])
    return x.reshape(lead + (-1,))


class Decoder(nn.Module):
  """Feature [..., F] -> mean image float32 [..., 64, 64, 3], in the [-0.5, 0.5] scale."""

  kind: str = 'transpose'  # 'transpose' | 'subpixel'
  depth: int = 48
  kernel: int = 4
  layers: int = 4
  subpixel_kernel: int = 3
  image_shape: tuple[int, int, int] = (64, 64, 3)
  impl: str = 'xla'  # 'xla' | 'patches' | 'phases' (see the module docstring)
  dtype: str = 'float32'  # precision of the products ('float32' | 'bfloat16'; precision.py)

  @nn.compact
  def __call__(self, feat: jax.Array) -> jax.Array:
    if self.kind not in ('transpose', 'subpixel'):
      raise ValueError(f'Unknown decoder kind {self.kind!r}.')
    height, width, channels = self.image_shape
    scale = 2**self.layers
    if height % scale or width % scale:
      raise ValueError(f'Image shape {self.image_shape} is not divisible by 2**layers = {scale}.')
    lead = feat.shape[:-1]
    x = feat.reshape((-1, feat.shape[-1]))
    start_depth = self.depth * 2 ** (self.layers - 1)
    x = layers.Dense(height // scale * width // scale * start_depth, dtype=self.dtype, name='project')(x)
    x = x.reshape((-1, height // scale, width // scale, start_depth))
    x = nn.silu(nn.LayerNorm(name='project_norm')(x))
    for i in range(self.layers):
      last = i == self.layers - 1
      out = channels if last else self.depth * 2 ** (self.layers - 2 - i)
      if self.kind == 'transpose':
        x = ConvTranspose(out, (self.kernel, self.kernel), impl=self.impl, dtype=self.dtype, name=f'conv{i}')(x)
      else:
        k = self.subpixel_kernel
        x = Conv(out * 4, (k, k), strides=(1, 1), padding='SAME', impl=self.impl, dtype=self.dtype, name=f'conv{i}')(x)
        x = depth_to_space(x, 2)
      if not last:
        x = nn.silu(nn.LayerNorm(name=f'norm{i}')(x))
    return x.reshape(lead + self.image_shape)
