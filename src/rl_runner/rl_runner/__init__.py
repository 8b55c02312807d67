"""The robot side of the asynchronous RL loop: the episode runner (RunEpisode action)."""
