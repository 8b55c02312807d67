"""record_dataset writes complete, readable rosbag2 folders of experts and failures."""

import json

import numpy as np
from vlac_ros.bags import bag_metadata, read_messages
from vlac_sim.record import TOPICS, main
import yaml


def test_records_expert_and_failing_episodes_as_mcap_bags(tmp_path, capsys):
    out = tmp_path / 'data'
    assert main(['--out', str(out), '--tasks', 'press_button', '--episodes', '1',
                 '--failures', '1', '--width', '96', '--height', '80', '--camera-rate', '5']) == 0
    index = [json.loads(line) for line in (out / 'index.jsonl').read_text().splitlines()]
    assert [(e['behaviour'], e['success']) for e in index] == [('expert', True),
                                                                 ('random', False)]
    for entry in index:
        bag = out / 'press_button' / f'{entry["behaviour"]}_0000'
        meta = bag_metadata(bag)
        info = yaml.safe_load((bag / 'metadata.yaml').read_text())['rosbag2_bagfile_information']
        assert info['storage_identifier'] == 'mcap' and info['version'] == 9
        assert set(meta['topics']) == set(TOPICS.values())
        assert meta['topics']['/camera/image_raw'][0] == 'sensor_msgs/msg/Image'
        assert meta['custom_data']['instruction'] == 'press the yellow button'
        assert meta['custom_data']['success'] == str(entry['success']).lower()
        assert meta['topics']['/task'][1] == 1
        steps = entry['steps']
        assert meta['topics']['/joint_states'][1] == steps + 1  # initial state + every step
        assert meta['topics']['/servo_node/delta_twist_cmds'][1] == steps
        # 20 Hz control, 5 Hz camera: a frame every 4 steps, plus the initial one.
        assert meta['topics']['/camera/image_raw'][1] == steps // 4 + 1
        images = [m for t, _, m in read_messages(bag, ['/camera/image_raw'])]
        assert (images[0].width, images[0].height, images[0].encoding) == (96, 80, 'rgb8')
        assert images[0].data.size == 96 * 80 * 3
        truth = [m for t, _, m in read_messages(bag, ['/eval_only/ground_truth'])]
        assert truth[-1].success == entry['success']
    # The expert's images change over the episode (the arm moves).
    frames = [m.data for _, _, m in read_messages(out / 'press_button' / 'expert_0000',
                                                   ['/camera/image_raw'])]
    assert not np.array_equal(frames[0], frames[-1])
    # Re-running resumes: nothing is re-recorded or overwritten.
    assert main(['--out', str(out), '--tasks', 'press_button', '--episodes', '1',
                 '--failures', '1', '--width', '96', '--height', '80']) == 0
    assert 'skip' in capsys.readouterr().out
    assert len((out / 'index.jsonl').read_text().splitlines()) == 2


def test_bad_arguments_are_refused_with_the_reason(tmp_path, capsys):
    assert main(['--out', str(tmp_path), '--tasks', 'juggle']) == 2
    assert "unknown task 'juggle'" in capsys.readouterr().err
