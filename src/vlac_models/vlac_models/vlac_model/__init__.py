"""The published VLAC checkpoints' interface, shared by the critic and the policy (ROS-free).

``prompts`` pins the exact prompt strings of the public inference code and builds queries and
chat turns; ``preprocess`` reproduces its image preprocessing (448x448 LANCZOS, one tile,
ImageNet normalisation) with numpy and torch; ``loading`` converts the original remote-code
checkpoints into transformers' native InternVL format (``vlac_convert_checkpoint``) and loads
converted directories. ``transformers`` is imported lazily, only by the loading functions.
"""
