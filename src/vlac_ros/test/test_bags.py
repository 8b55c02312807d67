"""rosbag2 folders written with rosbags: complete, atomic, and readable back field for field."""

import pytest
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import Image, JointState
from vlac_ros.bags import (
    STAGING_DIR,
    BagWriter,
    bag_metadata,
    read_messages,
    to_rosbags,
    typestore,
)
from vlac_testing.message_publisher import import_type
from vlac_testing.messages import differences, filled
import yaml

TYPES = ['sensor_msgs/msg/Image', 'sensor_msgs/msg/JointState', 'geometry_msgs/msg/PoseStamped',
         'geometry_msgs/msg/TwistStamped', 'std_msgs/msg/String',
         'trajectory_msgs/msg/JointTrajectory'] + [
    f'vlac_interfaces/msg/{n}' for n in ('DeltaAction', 'EpisodeResult', 'GroundTruth',
                                        'Observation', 'PolicyVersion', 'ProgressReward',
                                        'Transition')]


def test_every_type_round_trips_through_a_bag(tmp_path):
    bag = tmp_path / 'episode_0'
    with BagWriter(bag, {'task': 'stack', 'seed': 4}) as writer:
        for k, name in enumerate(TYPES):
            writer.write(f'/t{k}', 1000 + k, filled(import_type(name), k))
    meta = bag_metadata(bag)
    assert meta['message_count'] == len(TYPES)
    assert meta['custom_data'] == {'task': 'stack', 'seed': '4'}
    info = yaml.safe_load((bag / 'metadata.yaml').read_text())['rosbag2_bagfile_information']
    assert info['version'] == 9 and info['storage_identifier'] == 'mcap'
    store = typestore()
    for topic, stamp, msg in read_messages(bag):
        k = int(topic[2:])
        name = TYPES[k]
        assert stamp == 1000 + k
        # Back through the real ROS deserialiser: what ros2 bag play would publish.
        cdr = store.serialize_cdr(msg, name)
        back = deserialize_message(bytes(cdr), import_type(name))
        assert differences(filled(import_type(name), k), back) == [], name


def test_raw_cdr_bytes_are_written_unchanged(tmp_path):
    store = typestore()
    original = filled(JointState, 1)
    cdr = bytes(store.serialize_cdr(to_rosbags(original), 'sensor_msgs/msg/JointState'))
    with BagWriter(tmp_path / 'raw') as writer:
        writer.add_topic('/joint_states', 'sensor_msgs/msg/JointState')
        writer.write('/joint_states', 5, cdr)
        with pytest.raises(KeyError, match='add_topic'):
            writer.write('/unknown', 6, cdr)
    [(_, _, msg)] = list(read_messages(tmp_path / 'raw'))
    assert bytes(store.serialize_cdr(msg, 'sensor_msgs/msg/JointState')) == cdr


def test_a_crash_leaves_no_half_bag_and_nothing_is_overwritten(tmp_path):
    bag = tmp_path / 'episode_1'
    with pytest.raises(RuntimeError):
        with BagWriter(bag) as writer:
            writer.write('/image', 1, Image(height=1, width=1, encoding='mono8', step=1,
                                            data=b'\x07'))
            raise RuntimeError('robot crashed mid-episode')
    assert not bag.exists()
    assert (tmp_path / STAGING_DIR / 'episode_1').is_dir()  # kept for recovery
    with BagWriter(bag) as writer:  # the retry is complete; the crashed attempt is kept aside
        writer.write('/image', 1, Image(height=1, width=1, encoding='mono8', step=1,
                                        data=b'\x08'))
    assert bag_metadata(bag)['message_count'] == 1
    assert len(list((tmp_path / STAGING_DIR).iterdir())) == 1
    with pytest.raises(FileExistsError):
        BagWriter(bag)


def test_messages_read_from_a_bag_can_be_written_to_another(tmp_path):
    first, second = tmp_path / 'first', tmp_path / 'second'
    with BagWriter(first) as writer:
        for k, name in enumerate(TYPES):
            writer.write(f'/t{k}', 1000 + k, filled(import_type(name), k))
    originals = list(read_messages(first))
    with BagWriter(second) as writer:
        for topic, stamp, msg in originals:
            writer.write(topic, stamp, msg)
    copies = list(read_messages(second))
    assert [(t, s, m.__msgtype__) for t, s, m in copies] == \
        [(t, s, m.__msgtype__) for t, s, m in originals]
    store = typestore()
    for (_, _, a), (_, _, b) in zip(originals, copies, strict=True):
        assert store.serialize_cdr(a, a.__msgtype__) == store.serialize_cdr(b, b.__msgtype__)
