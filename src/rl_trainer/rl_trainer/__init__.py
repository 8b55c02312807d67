"""Off-board PPO trainer and robot-side episode runner of the VLAC RL loop."""
