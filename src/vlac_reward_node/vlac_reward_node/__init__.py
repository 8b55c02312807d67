"""VLAC progress critic node: dense progress reward, value and done from camera frames."""
