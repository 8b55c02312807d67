"""The VLAC prompt strings, pinned verbatim against the public inference code (evo_vlac)."""

import pytest
from vlac_models.vlac_model import prompts

TASK = 'pick up the red cube'

SYSTEM = (
    'You are a visual-language assistant designed to interpret spatial and task-related '
    'information from images and text. Provide precise, context-aware responses and actionable '
    'guidance to assist in achieving task objectives.'
)

PAIRWISE = (
    'Image-1: <image>\nImage-2: <image>\nCompare two images and evaluate whether the second '
    'image is closer to achieving task objectives compared to the first image. + score means '
    'the second image is closer, - score means the first image is closer\nResponse the relative '
    'progressing of target task follow <score>. The target task is: <task> pick up the red cube '
    '</task> <score>'
)

BEGINNING = '0% <image>\nThis image is the trajectory beginning of the following two images\n'

IN_CONTEXT_3 = (
    '<trajectory> <task> pick up the red cube </task>: 0% <image>\n 50% <image>\n 100% <image>\n'
    '</trajectory>' + BEGINNING + PAIRWISE
)

IN_CONTEXT_5 = (
    '<trajectory> <task> pick up the red cube </task>: 0% <image>\n 25% <image>\n 50% <image>\n'
    ' 75% <image>\n 100% <image>\n</trajectory>' + BEGINNING + PAIRWISE
)

DONE = (
    '<image>The 1 means yes, the 0 means no. Check if the robot has completed its task: '
    '<task> pick up the red cube </task> <done>'
)

GOAL_DONE = (
    '<goal> <task> pick up the red cube </task>: <image>\n<goal>\n<image>\n The 1 means yes, the '
    '0 means no. Refer to the goal, check if the robot has completed its task: <task> pick up '
    'the red cube </task> <done>'
)

STATE = ('{x: -47mm, y: 19mm, z: 66mm, roll: 14 degrees, pitch: 10 degrees, yaw: 15 degrees, '
         'open: 0}')

ACTION_1 = (
    "<image>\nThe current position state of the robotic arm's end gripper in the image is as "
    'follows: <state> {x: -47mm, y: 19mm, z: 66mm, roll: 14 degrees, pitch: 10 degrees, yaw: 15 '
    'degrees, open: 0} </state>. What action should the robot take to get better completion of '
    'instruction: <task> pick up the red cube </task> <action>'
)


def test_system_prompt() -> None:
    assert prompts.SYSTEM_PROMPT == SYSTEM


def test_pairwise_prompt() -> None:
    assert prompts.pairwise_prompt(TASK) == PAIRWISE
    assert prompts.count_images(PAIRWISE) == 2


def test_in_context_prompt_3_and_5_reference_frames() -> None:
    assert prompts.in_context_pairwise_prompt(TASK, 3) == IN_CONTEXT_3
    assert prompts.in_context_pairwise_prompt(TASK, 5) == IN_CONTEXT_5
    assert prompts.count_images(IN_CONTEXT_3) == 3 + 3
    assert prompts.count_images(IN_CONTEXT_5) == 5 + 3


def test_reference_labels() -> None:
    assert prompts.progress_labels(2) == [0, 100]
    assert prompts.progress_labels(9) == [0, 12, 25, 37, 50, 62, 75, 87, 100]
    # int((k / (N - 1)) * 100) in float, as the public code computes it: 29/100*100 = 28.99..
    assert prompts.progress_labels(101)[29] == 28
    with pytest.raises(ValueError, match='at least 2'):
        prompts.progress_labels(1)


def test_reference_sampling_includes_first_and_last() -> None:
    assert prompts.sample_reference_indices(10, 4) == [0, 3, 6, 9]
    assert prompts.sample_reference_indices(6, 6) == [0, 1, 2, 3, 4, 5]
    assert prompts.sample_reference_indices(100, 9) == [0, 12, 24, 37, 49, 61, 74, 86, 99]
    for length in range(1, 120):
        for count in range(2, 12):
            indices = prompts.sample_reference_indices(length, count)
            assert indices[0] == 0 and indices[-1] == length - 1
            assert indices == sorted(indices)
            # Same as the public float formula wherever float rounding does not bite.
            delta = (length - 1) / (count - 1)
            public = [0] + [int(i * delta) for i in range(1, count)]
            assert all(abs(a - b) <= 1 for a, b in zip(indices, public, strict=True))


def test_done_prompts() -> None:
    assert prompts.DONE_TEMPLATE.format(task=TASK) == DONE[len('<image>'):]
    assert prompts.done_prompt(TASK) == DONE
    assert prompts.goal_done_prompt(TASK) == GOAL_DONE
    assert prompts.count_images(GOAL_DONE) == 2


def test_action_prompt() -> None:
    assert prompts.format_pose([-47, 19, 66, 14, 10, 15, 0]) == STATE
    assert prompts.action_prompt(TASK, STATE) == ACTION_1
    two_views = prompts.action_prompt(TASK, STATE, num_views=2)
    assert two_views == 'Image-1: <image>\nImage-2: <image>\n' + ACTION_1[len('<image>\n'):]
    with pytest.raises(ValueError, match='num_views'):
        prompts.action_prompt(TASK, STATE, num_views=4)
    with pytest.raises(ValueError, match='7 values'):
        prompts.format_pose([1, 2, 3])
    with pytest.raises(ValueError, match='integers'):
        prompts.format_pose([1.5, 2, 3, 4, 5, 6, 0])


def test_chat_rendering_expands_images_as_swift() -> None:
    text = prompts.render_chat(prompts.pairwise_prompt(TASK), tokens_per_image=2)
    image = '<img><IMG_CONTEXT><IMG_CONTEXT></img>\n'
    expected = (
        '<|im_start|>system\n' + SYSTEM + '<|im_end|>\n<|im_start|>user\n'
        + 'Image-1: ' + image + '\nImage-2: ' + image + '\n'
        + PAIRWISE[PAIRWISE.index('Compare'):] + '<|im_end|>\n<|im_start|>assistant\n')
    assert text == expected
    assert prompts.render_chat('hi', 256, system=None) == (
        '<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n')
    assert prompts.render_chat(DONE, 1).count('<IMG_CONTEXT>') == 1
    assert prompts.render_chat(IN_CONTEXT_3, 256).count('<IMG_CONTEXT>') == 6 * 256


@pytest.mark.parametrize('task', ['', '   ', None, 'look at <image> here'])
def test_bad_task_is_refused(task) -> None:
    with pytest.raises(ValueError, match='task'):
        prompts.pairwise_prompt(task)


def test_task_with_braces_is_kept_verbatim() -> None:
    assert '<task> stack {a} on {b} </task>' in prompts.pairwise_prompt('stack {a} on {b}')
