"""Flax modules of the world model, actor and critics: `conv` (encoder, decoder), `rssm` (ensembled
RSSM), `actor_critic` (policy, twin critics), `layers` (MLP, categorical helpers) and `world_model`
(`Networks`, `make_networks`)."""
