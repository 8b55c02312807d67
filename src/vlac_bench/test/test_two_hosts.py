"""The robot and the trainer on two hosts, the link between them cut for 10 s mid-episode.

Two Linux network namespaces joined by a veth pair (``vlac_testing.netns``; private addresses
that exist only inside them) stand for the robot PC and the trainer PC. DDS is set up as in a
lab (docs/deploy.md): UDP on each host's own address, discovery by a static peer list, no
multicast, no shared memory (which would bypass the cut link). The robot (simulator, critic,
policy node, runner) runs in one namespace, trainer_node in the other; the test's RunEpisode
client (``vlac_testing.episode_driver``) runs in the robot's. The weights folder is shared, as
a lab shares it over NFS.

Episode 1 runs with the link up and is stored. During episode 2 the link goes down for 10 s:
the robot keeps acting with the weights it has and records everything; the episode ends while
the trainer cannot hear it. When the link returns the trainer receives what it missed (the
reliable, transient-local streams), stores episode 2 once, trains on episodes 1 and 2 in one
update and ships version 1, which the robot loads. Nothing is lost, nothing is trained twice.

The namespace test needs root and working ``ip netns`` (CI runs as root); it is skipped
otherwise. The profile test runs everywhere.
"""

import csv
import json
import sys
import time
import xml.etree.ElementTree as ET

import pytest
from rl_trainer.storage import EpisodeStore
from vlac_bench.sim_loop import start_robot, start_trainer
from vlac_models.stamps import stamp_ns
from vlac_ros.bags import read_messages
from vlac_ros.dds import peers_env, peers_profile
from vlac_testing.models import tiny_policy
from vlac_testing.netns import TwoHosts, available

AVAILABLE, WHY = available()
needs_netns = pytest.mark.skipif(not AVAILABLE, reason=WHY or 'network namespaces unavailable')

TASK = 'press_button'
ROBOT = 'robot_1'
# One update needs more than episode 1 (3 s at 10 Hz: ~30 steps) and less than episodes 1+2.
TRAINER = {'learner.min_transitions': 50, 'ppo.epochs': 1, 'ppo.minibatch_size': 32,
           'rewards.max_uncovered_fraction': 0.9}
SHORT = 3.0     # s, an episode with the link up
CUT = 8.0       # s, the episode during which the link goes down (ends before it returns)
CUT_AFTER = 2.0  # s after that episode starts acting
OUTAGE = 10.0   # s without a link

pytestmark = pytest.mark.slow(55)  # s on 2 cores: scheduled first


@pytest.fixture(scope='module')
def models(loop_critic, tmp_path_factory) -> dict:
    return {'critic': loop_critic,
            'policy': tiny_policy(tmp_path_factory.mktemp('policy') / 'policy')}


@pytest.fixture
def two_hosts():
    """The two namespaces; requested before ros_graph, so its processes stop first."""
    with TwoHosts() as hosts:
        yield hosts


def test_peers_profile_is_unicast_udp_on_the_own_address_only(tmp_path):
    ns = {'d': 'http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles'}
    root = ET.fromstring(peers_profile('10.231.0.1', ['10.231.0.2']))
    transports = root.findall('d:transport_descriptors/d:transport_descriptor', ns)
    assert [t.findtext('d:type', namespaces=ns) for t in transports] == ['UDPv4']  # no SHM
    assert [a.text for a in transports[0].iter(f'{{{ns["d"]}}}address')] == ['10.231.0.1']
    rtps = root.find('d:participant/d:rtps', ns)
    assert rtps.findtext('d:useBuiltinTransports', namespaces=ns) == 'false'
    builtin = rtps.find('d:builtin', ns)
    assert builtin.find('d:metatrafficMulticastLocatorList', ns) is None
    assert builtin.find('d:metatrafficUnicastLocatorList', ns) is not None  # so no multicast
    peers = [a.text for a in builtin.find('d:initialPeersList', ns).iter(f'{{{ns["d"]}}}address')]
    assert peers == ['10.231.0.1', '10.231.0.2']
    assert [k.text for k in root.iter(f'{{{ns["d"]}}}kind')] == ['OFF', 'OFF']  # data sharing
    real_host = ET.fromstring(peers_profile('10.0.0.5', ['10.0.0.7'], shared_memory=True))
    assert [t.findtext('d:type', namespaces=ns) for t in real_host.findall(
        'd:transport_descriptors/d:transport_descriptor', ns)] == ['UDPv4', 'SHM']
    for own, peers in (('10.231.0.300', ['10.231.0.2']), ('239.255.0.1', ['10.231.0.2']),
                       ('127.0.0.1', ['10.231.0.2']), ('10.231.0.1', []),
                       ('10.231.0.1', ['10.231.0.1'])):
        with pytest.raises(ValueError):
            peers_profile(own, peers)
    env = peers_env('10.231.0.1', ['10.231.0.2'], tmp_path / 'p.xml', {'ROS_LOCALHOST_ONLY': '1'},
                    domain_id=7)
    assert env['FASTRTPS_DEFAULT_PROFILES_FILE'] == str((tmp_path / 'p.xml').resolve())
    assert env['ROS_DOMAIN_ID'] == '7' and 'ROS_LOCALHOST_ONLY' not in env
    assert (tmp_path / 'p.xml').read_text() == peers_profile('10.231.0.1', ['10.231.0.2'])


def events(process) -> list[dict]:
    """The JSON lines an episode_driver printed so far."""
    return [json.loads(line) for line in process.output().splitlines()
            if line.startswith('{"event"')]


def wait_result(graph, process, timeout: float) -> dict:
    """The driver's result event (RuntimeError on its error event)."""
    def result():
        for event in events(process):
            if event['event'] == 'error':
                raise RuntimeError(f'episode driver: {event["message"]}')
            if event['event'] == 'result':
                return event
        return None
    return graph.wait_for(result, timeout, f'result of {process.name}', period=0.1)


@needs_netns
def test_link_cut_mid_episode_loses_nothing_and_trains_nothing_twice(two_hosts, ros_graph,
                                                                    models, tmp_path):
    hosts, graph = two_hosts, ros_graph
    robot_pc, trainer_pc = tmp_path / 'robot_pc', tmp_path / 'trainer_pc'
    shared_weights = robot_pc / 'weights'  # the folder a lab shares (NFS) between the hosts

    def host(name: str):
        env = peers_env(hosts.address(name), [hosts.peer_address(name)],
                        tmp_path / f'fastdds_{name}.xml', domain_id=graph.domain_id,
                        log_dir=graph.workdir / 'ros_log')
        return graph.host(name, env)

    robot, trainer = host(hosts.robot), host(hosts.trainer)
    start_robot(robot, ROBOT, models['critic'], models['policy'], robot_pc, TASK)
    start_trainer(trainer, models['policy'], trainer_pc, [ROBOT],
                  **{'learner.weights_dir': str(shared_weights), **TRAINER})

    def drive(seed: int, duration: float):
        return robot.start_process(
            [sys.executable, '-m', 'vlac_testing.episode_driver', '--namespace', ROBOT,
             '--task', TASK, '--seed', str(seed), '--max-duration', str(duration),
             '--server-timeout', '150'], name=f'episode_driver_{seed}')

    def wait_log(text: str, timeout: float, what: str) -> None:
        graph.wait_for(lambda: text in graph.logs(), timeout, what, period=0.2)

    def stored_lines(episode_id: str) -> list[str]:
        return [line for line in graph.logs().splitlines()
                if f'episode {ROBOT}/{episode_id} stored (' in line]

    # Episode 1, link up: the trainer stores it (too few steps to train on alone).
    first = wait_result(graph, drive(1, SHORT), 240.0)
    assert first['termination_reason'] == 'timeout' and first['steps'] < 50, first
    graph.wait_for(lambda: stored_lines(first['episode_id']), 60.0, 'episode 1 stored',
                   period=0.2)

    # Episode 2: the link goes down CUT_AFTER s after the robot starts acting, for OUTAGE s.
    driver = drive(2, CUT)
    wait_log(f'limit {CUT:.1f} s', 60.0, 'episode 2 acting')
    time.sleep(CUT_AFTER)
    hosts.link_down()
    cut_at = time.time()
    second = wait_result(graph, driver, OUTAGE + 30.0)
    ended_during_outage = second['time'] < cut_at + OUTAGE
    time.sleep(max(0.0, cut_at + OUTAGE - time.time()))
    heard_during_outage = bool(stored_lines(second['episode_id']))
    hosts.link_up()
    up_at = time.time()
    assert ended_during_outage, (second, cut_at)
    assert not heard_during_outage, 'the trainer stored episode 2 while the link was down'
    assert second['termination_reason'] == 'timeout', second

    # The link is back: the trainer gets episode 2, trains on 1 and 2, ships version 1.
    graph.wait_for(lambda: stored_lines(second['episode_id']), 90.0, 'episode 2 stored',
                   period=0.2)
    stored_after = time.time() - up_at
    wait_log('published policy version 1', 120.0, 'version 1 shipped')
    wait_log(f'[{ROBOT}.vlac_policy_node]: policy version 1 loaded', 60.0,
             'the robot loaded version 1')

    # Nothing lost: the trainer stored every episode the robot recorded, each once, whole.
    results = {r['episode_id']: r for r in (first, second)}
    recorded = sorted(p.name for p in (robot_pc / 'robot_episodes' / ROBOT).iterdir()
                      if not p.name.startswith('.'))
    assert recorded == sorted(results), recorded
    store = EpisodeStore(trainer_pc / 'episodes')
    assert sorted(store.keys()) == sorted(f'{ROBOT}/{i}' for i in results)
    for episode_id, result in results.items():
        assert len(stored_lines(episode_id)) == 1, stored_lines(episode_id)
        bag_steps = [m.step for topic, _, m in read_messages(result['bag_path'])
                     if topic == f'/{ROBOT}/transitions']
        assert bag_steps == list(range(result['steps'])), (episode_id, bag_steps)
        kept = store.load(f'{ROBOT}/{episode_id}').transitions
        assert [t.step for t in kept] == bag_steps, episode_id
    # Nothing trained twice: one update, on both episodes.
    state = json.loads(sorted((trainer_pc / 'checkpoints').glob('checkpoint_*'))[-1]
                       .joinpath('trainer_state.json').read_text())
    assert sorted(state['consumed_episodes']) == sorted(f'{ROBOT}/{i}' for i in results)
    with (trainer_pc / 'logs' / 'updates.csv').open() as handle:
        trained = [float(row['train/episodes']) for row in csv.DictReader(handle)]
    assert trained == [2.0], trained

    # The robot kept acting through the outage with the weights it had (version 0): its
    # transitions run on without a gap across the cut, to the end of the episode.
    acted = [(stamp_ns(m.header.stamp) / 1e9, m.policy_version)
             for topic, _, m in read_messages(second['bag_path'])
             if topic == f'/{ROBOT}/transitions']
    stamps = [t for t, _ in acted]
    during = [t for t in stamps if cut_at <= t <= cut_at + OUTAGE]
    assert {v for _, v in acted} == {0}
    assert stamps[0] < cut_at and len(during) >= 0.5 * 10.0 * (second['time'] - cut_at), (
        cut_at, stamps)
    assert max(b - a for a, b in zip(stamps[:-1], stamps[1:], strict=True)) < 1.0, stamps
    print(f'\nlink down {OUTAGE:.0f} s at {CUT_AFTER:.0f} s into a {CUT:.0f} s episode: '
          f'{len(during)} of {len(stamps)} steps acted while cut; episode 2 stored '
          f'{stored_after:.1f} s after the link returned')
