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


class Encoder(nn.Module):
  """uint8 image [..., 64, 64, 3] -> embedding float32 [..., E]."""
  depth: int = 48
  kernel: int = 4
  layers: int = 4

  @nn.compact
  def __call__(self, image: jax.Array) -> jax.Array:
    chex.assert_type(image, jnp.uint8)
    lead = image.shape[:-3]
    x = preprocess(image.reshape((-1,) + image.shape[-3:]))
    for i in range(self.layers):
      x = nn.Conv(self.depth * 2 ** i, (self.kernel, self.kernel), strides=(2, 2), padding='VALID',
                  name=f'conv{i}')(x)
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
        x = nn.Conv(out * 4, (k, k), strides=(1, 1), padding='SAME', name=f'conv{i}')(x)
        x = depth_to_space(x, 2)
      if not last:
        x = nn.silu(nn.LayerNorm(name=f'norm{i}')(x))
    return x.reshape(lead + self.image_shape)
