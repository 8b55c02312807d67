"""Human-in-the-loop teleoperation and intervention for the VLAC RL loop."""
