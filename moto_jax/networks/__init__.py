"""Flax modules of the world model, actor and critics."""
from moto_jax.networks.actor_critic import Actor, Critic, QNetwork, TanhGaussian
from moto_jax.networks.conv import Decoder, Encoder
from moto_jax.networks.rssm import RSSM, feature, imagine, initial_state, observe
from moto_jax.networks.world_model import Networks, make_networks
