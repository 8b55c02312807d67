r"""Prompt templates of the published VLAC checkpoints and their builders (ROS-free, no torch).

The checkpoints were fine-tuned with ms-swift's ``internvl2`` chat template and the prompts of
the public inference code (github InternRobotics/VLAC, ``evo_vlac``, class ``GAC_model``). The
model only behaves when it sees exactly those strings, so they are pinned here as constants
(and verbatim in ``test/test_vlac_prompts.py``); nothing here is paraphrased.

Where ``VLAC_PAPER.md`` and the public code differ, the public code wins:

- the in-context reference block ends with ``</trajectory>`` and the trajectory-beginning line
  follows with no separator: ``...100% <image>\n</trajectory>0% <image>\nThis image is...``;
- each reference label is preceded by one space (``: 0% <image>\n 50% <image>\n``) and the
  labels are ``int((k / (N - 1)) * 100)`` computed in that float order (29 of 100 gives 28);
- every ``<image>`` becomes ``<img>`` + ``<IMG_CONTEXT>`` x 256 + ``</img>\n`` (the swift
  template appends a newline after ``</img>``), so the ``\n`` that follows ``<image>`` in the
  prompt text yields a blank line after each image;
- the done template has no ``<image>`` tag: swift prepends ``<image>`` to the user turn (no
  newline), so the model reads ``<img>...</img>\nThe 1 means yes...``;
- the system prompt is always sent (the examples call ``set_system_prompt()``).

A conversation is rendered as (the tokenizer adds the ``<s>`` BOS token itself)::

    <|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n{query}<|im_end|>\n
    <|im_start|>assistant\n

The builders validate their inputs and raise ``ValueError`` naming the bad value.
"""

from __future__ import annotations

from typing import Sequence

SYSTEM_PROMPT = (
    'You are a visual-language assistant designed to interpret spatial and task-related '
    'information from images and text. Provide precise, context-aware responses and actionable '
    'guidance to assist in achieving task objectives.'
)
"""System prompt of the public release (``GAC_model.set_system_prompt()``, swift args.json)."""

IMAGE_PLACEHOLDER = '<image>'
"""Where an image goes in a query; expanded by ``expand_image_placeholders``."""

IMG_START_TOKEN = '<img>'
IMG_END_TOKEN = '</img>'
IMG_CONTEXT_TOKEN = '<IMG_CONTEXT>'
"""The token whose embeddings are replaced by the projected vision features."""

PAIRWISE_TEMPLATE = (
    'Image-1: <image>\nImage-2: <image>\n'
    'Compare two images and evaluate whether the second image is closer to achieving task '
    'objectives compared to the first image. + score means the second image is closer, - score '
    'means the first image is closer\n'
    'Response the relative progressing of target task follow <score>. '
    'The target task is: <task> {task} </task> <score>'
)
"""Pairwise progress prompt (``GAC_model`` ``prompt_templete['v3']``); two images."""

TRAJECTORY_BEGINNING = (
    '0% <image>\nThis image is the trajectory beginning of the following two images\n'
)
"""In-context line that shows the current trajectory's first frame (``'v3_think'`` prefix)."""

REFERENCE_OPEN = '<trajectory> <task> {task} </task>:'
REFERENCE_FRAME = ' {percent}% <image>\n'
REFERENCE_CLOSE = '</trajectory>'

DONE_TEMPLATE = (
    'The 1 means yes, the 0 means no. Check if the robot has completed its task: '
    '<task> {task} </task> <done>'
)
"""Task-completion prompt (``prompt_templete['task_done']``); one image."""

GOAL_DONE_TEMPLATE = (
    '<goal> <task> {task} </task>: <image>\n<goal>\n<image>\n The 1 means yes, the 0 means no. '
    'Refer to the goal, check if the robot has completed its task: <task> {task} </task> <done>'
)
"""Completion with a goal image (``prompt_templete['context_task_done']``); goal, then frame."""

ACTION_TEMPLATE = (
    "The current position state of the robotic arm's end gripper in the image is as follows: "
    '<state> {state} </state>. What action should the robot take to get better completion of '
    'instruction: <task> {task} </task> <action>'
)
"""Policy prompt (``prompt_templete['task_action']``), after one image line per camera view."""

VIEW_PREFIXES = {
    1: '<image>\n',
    2: 'Image-1: <image>\nImage-2: <image>\n',
    3: 'Image-1: <image>\nImage-2: <image>\nImage-3: <image>\n',
}
"""Image lines before the action prompt, by number of camera views (public code: 1 to 3)."""

POSE_TEMPLATE = (
    '{{x: {}mm, y: {}mm, z: {}mm, roll: {} degrees, pitch: {} degrees, yaw: {} degrees, '
    'open: {}}}'
)
"""State/action text of the public code (``format_songling_v2``), braces included."""

CHAT_TEMPLATE = (
    '<|im_start|>system\n{system}<|im_end|>\n'
    '<|im_start|>user\n{query}<|im_end|>\n'
    '<|im_start|>assistant\n'
)
"""ChatML as rendered by ms-swift's ``internvl2`` template (BOS is added by the tokenizer)."""

CHAT_TEMPLATE_NO_SYSTEM = '<|im_start|>user\n{query}<|im_end|>\n<|im_start|>assistant\n'

DEFAULT_REFERENCE_FRAMES = 9
"""Reference frames sampled from a demonstration when the caller gives more (public default)."""


def _check_task(task: str) -> str:
    if not isinstance(task, str) or not task.strip():
        raise ValueError(f'task must be a non-empty string, got {task!r}')
    if IMAGE_PLACEHOLDER in task:
        raise ValueError(f'task must not contain {IMAGE_PLACEHOLDER!r}: {task!r}')
    return task


def progress_labels(num_frames: int) -> list[int]:
    """Percent labels of ``num_frames`` reference frames: ``int((k / (N - 1)) * 100)``.

    The float order matters for exact agreement with the public code (k=29, N=101 gives 28).
    """
    if not isinstance(num_frames, int) or num_frames < 2:
        raise ValueError(f'a reference needs at least 2 frames, got {num_frames!r}')
    last = num_frames - 1
    return [int((k / last) * 100) for k in range(num_frames)]


def sample_reference_indices(length: int, num_frames: int) -> list[int]:
    """Indices of ``num_frames`` frames sampled uniformly from ``length``, first and last included.

    Same rule as the public code (``ref[int(i * (L - 1) / (N - 1))]``) but in integer
    arithmetic, so float rounding can never drop the last frame. Repeats an index when
    ``num_frames > length`` (as the public code does).
    """
    if not isinstance(length, int) or length < 1:
        raise ValueError(f'reference length must be >= 1, got {length!r}')
    if not isinstance(num_frames, int) or num_frames < 2:
        raise ValueError(f'num_frames must be >= 2, got {num_frames!r}')
    return [(i * (length - 1)) // (num_frames - 1) for i in range(num_frames)]


def pairwise_prompt(task: str) -> str:
    """Pairwise progress query; images: previous frame, current frame."""
    return PAIRWISE_TEMPLATE.format(task=_check_task(task))


def reference_block(task: str, num_frames: int) -> str:
    """In-context reference block for ``num_frames`` demonstration frames (one image each)."""
    parts = [REFERENCE_OPEN.format(task=_check_task(task))]
    parts += [REFERENCE_FRAME.format(percent=p) for p in progress_labels(num_frames)]
    parts.append(REFERENCE_CLOSE)
    return ''.join(parts)


def in_context_pairwise_prompt(task: str, num_reference: int) -> str:
    """In-context pairwise query (``GAC_model.get_score_prompt`` with a reference trajectory).

    Images, in order: the ``num_reference`` reference frames, the current trajectory's first
    frame, the previous frame, the current frame (``num_reference + 3`` in all).
    """
    return reference_block(task, num_reference) + TRAJECTORY_BEGINNING + pairwise_prompt(task)


def done_prompt(task: str) -> str:
    """Task-completion query; one image (the frame to judge).

    The public template has no ``<image>`` tag; swift then prepends one to the user turn, with
    no newline (``_add_default_tags``), so the query is ``'<image>' + DONE_TEMPLATE``.
    """
    return IMAGE_PLACEHOLDER + DONE_TEMPLATE.format(task=_check_task(task))


def goal_done_prompt(task: str) -> str:
    """Task-completion query against a goal image; images: goal frame, frame to judge."""
    _check_task(task)
    return GOAL_DONE_TEMPLATE.format(task=task)


def format_pose(values: Sequence[int]) -> str:
    """Pose text of the public code: ``{x: 1mm, ..., yaw: 3 degrees, open: 0}`` (7 integers).

    ``values`` are x, y, z in millimetres, roll, pitch, yaw in degrees and the gripper (0/1),
    already rounded by the caller's codec.
    """
    if len(values) != 7:
        raise ValueError(f'a pose has 7 values (x y z roll pitch yaw open), got {values!r}')
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f'pose values must be integers, got {values!r}')
    return POSE_TEMPLATE.format(*values)


def action_prompt(task: str, state: str, num_views: int = 1) -> str:
    """Policy query: image lines for ``num_views`` cameras, the state text and the task.

    ``state`` is the formatted end-effector state (see ``format_pose``).
    """
    if num_views not in VIEW_PREFIXES:
        raise ValueError(f'num_views must be 1, 2 or 3, got {num_views!r}')
    if not isinstance(state, str) or not state:
        raise ValueError(f'state must be a non-empty string, got {state!r}')
    return VIEW_PREFIXES[num_views] + ACTION_TEMPLATE.format(state=state, task=_check_task(task))


def count_images(query: str) -> int:
    """Number of image placeholders in ``query``."""
    return query.count(IMAGE_PLACEHOLDER)


def expand_image_placeholders(query: str, tokens_per_image: int) -> str:
    r"""Replace each ``<image>`` by ``<img>`` + ``<IMG_CONTEXT>`` x n + ``</img>\n`` (swift)."""
    if not isinstance(tokens_per_image, int) or tokens_per_image < 1:
        raise ValueError(f'tokens_per_image must be a positive int, got {tokens_per_image!r}')
    image = IMG_START_TOKEN + IMG_CONTEXT_TOKEN * tokens_per_image + IMG_END_TOKEN + '\n'
    return query.replace(IMAGE_PLACEHOLDER, image)


def render_chat(query: str, tokens_per_image: int, system: str | None = SYSTEM_PROMPT) -> str:
    """Full model input text for one user turn, images expanded, ready for the assistant reply.

    ``system=None`` leaves the system turn out (swift would then insert InternVL2's own default
    system prompt, which the VLAC checkpoints were not trained with: keep the default).
    """
    text = expand_image_placeholders(query, tokens_per_image)
    if system is None:
        return CHAT_TEMPLATE_NO_SYSTEM.format(query=text)
    return CHAT_TEMPLATE.format(system=system, query=text)
