"""Off-board PPO trainer of the VLAC RL loop: episode store, learner, PPO, reward join."""
