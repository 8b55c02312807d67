"""VLAC policy (actor) node: delta end-effector actions from images, state and task."""
