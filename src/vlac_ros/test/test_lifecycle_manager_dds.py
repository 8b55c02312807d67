"""lifecycle_manager over real DDS, every node in its own process: order, a kill, bring-down.

The managed nodes are the stack's own: the critic (vlac_reward_node), the policy
(vlac_policy_node, configure-only as on the robot: the runner activates it per episode), the
trainer (root namespace) and the episode runner, each started with ``autostart`` false and
real model files the test writes (random weights: this is about bring-up, not skill). The
manager's states topic says what it did; each node's own ``get_state`` says where it is.
"""

import json
import pathlib
import signal

from lifecycle_msgs.srv import GetState
import pytest
from std_msgs.msg import String
from std_srvs.srv import Trigger
import torch
from vlac_models.critic.compact import CompactConfig, CompactCriticNet, export_model_dir
from vlac_ros.qos import LATCHED
from vlac_testing.models import tiny_policy

ROOT = pathlib.Path(__file__).resolve().parents[3]
LOOP = ROOT / 'config' / 'loop.yaml'
ARM = ROOT / 'config' / 'arms' / 'sim_panda_servo.yaml'
NS = 'robot_1'
MANAGED = ('vlac_reward_node', 'vlac_policy_node', '/trainer_node', 'episode_runner')
FQN = {'vlac_reward_node': '/robot_1/vlac_reward_node',
       'vlac_policy_node': '/robot_1/vlac_policy_node', 'trainer_node': '/trainer_node',
       'episode_runner': '/robot_1/episode_runner'}
SHORT = {fqn: short for short, fqn in FQN.items()}

pytestmark = pytest.mark.slow(55)  # s on 2 cores: scheduled first


@pytest.fixture(scope='module')
def models(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp('managed_models')
    torch.manual_seed(0)
    critic = export_model_dir(CompactCriticNet(CompactConfig(
        frame_size=32, channels=(8, 16, 16, 8), embed_dim=32, hidden_dim=64)), root / 'critic')
    return {'critic': critic, 'policy': tiny_policy(root / 'policy')}


def start(graph, name: str, models: dict, work: pathlib.Path):
    """Start one managed node (autostart off), as launch would; again after a kill."""
    if name == 'vlac_reward_node':
        return graph.start_node(name, package=name, name=name, namespace=NS,
                                params_files=[LOOP],
                                parameters={'model_path': str(models['critic']),
                                            'debug_image': False, 'autostart': False})
    if name == 'vlac_policy_node':
        return graph.start_node(name, package=name, name=name, namespace=NS,
                                params_files=[ARM],
                                parameters={'model_path': str(models['policy']),
                                            'autostart': False})
    if name == 'trainer_node':
        return graph.start_node(name, package='rl_trainer', name=name, params_files=[LOOP],
                                parameters={'robots': [NS], 'tensorboard': False,
                                            'learner.work_dir': str(work / 'trainer'),
                                            'learner.weights_dir': str(work / 'weights'),
                                            'learner.model_path': str(models['policy']),
                                            'autostart': False})
    return graph.start_node(name, package='rl_runner', name=name, namespace=NS,
                            params_files=[LOOP],
                            parameters={'episodes_dir': str(work / 'episodes'),
                                        'autostart': False})


class Manager:
    """The test's view of the manager: its latched states and its services."""

    def __init__(self, graph) -> None:
        self.graph = graph
        self.states = graph.subscribe(String, f'/{NS}/lifecycle_manager/states', LATCHED)
        self.get_state = {short: graph.node.create_client(GetState, f'{fqn}/get_state')
                          for short, fqn in FQN.items()}

    def report(self) -> dict:
        last = self.states.last
        return json.loads(last.data) if last is not None else {}

    def node_states(self) -> dict[str, str]:
        return {SHORT[n['name']]: n['state'] for n in self.report().get('nodes', [])}

    def wait(self, predicate, what: str, timeout: float = 40.0) -> dict:
        self.graph.wait_for(lambda: self.report() and predicate(self.report()), timeout, what,
                            period=0.1)
        return self.report()

    def transitions(self, since: str) -> list[tuple[str, str]]:
        """(node, transition) the manager made after the last event ``since`` (a text)."""
        events = self.report()['events']
        first = max(i for i, (_, _, text) in enumerate(events) if text == since)
        return [(SHORT[name], text.split(':')[0]) for _, name, text in events[first:]
                if text.split(':')[0] in ('configure', 'activate', 'deactivate', 'cleanup')
                and not text.split(':')[1].strip().startswith(('failed', 'refused'))]

    def own_states(self) -> dict[str, str]:
        """What each node says itself (get_state), not what the manager reports."""
        answers = {}
        for short, client in self.get_state.items():
            response = client.call(GetState.Request(), timeout_sec=10.0)
            answers[short] = response.current_state.label if response else 'no answer'
        return answers

    def trigger(self, service: str, timeout: float = 60.0) -> Trigger.Response:
        client = self.graph.node.create_client(Trigger, f'/{NS}/lifecycle_manager/{service}')
        assert client.wait_for_service(timeout_sec=10.0)
        response = client.call(Trigger.Request(), timeout_sec=timeout)
        assert response is not None, f'no answer from ~/{service}'
        return response


def test_ordered_bringup_a_killed_node_brought_back_and_bringdown(ros_graph, models, tmp_path):
    processes = {name: start(ros_graph, name, models, tmp_path) for name in FQN}
    ros_graph.start_node('lifecycle_manager', package='vlac_ros', name='lifecycle_manager',
                         namespace=NS, parameters={
                             'node_names': list(MANAGED), 'configure_only': ['vlac_policy_node'],
                             'autostart': True, 'check_period': 0.5, 'check_timeout': 2.0,
                             'missed_checks': 2, 'retry_backoff': 0.5,
                             'transition_timeout': 60.0})
    manager = Manager(ros_graph)

    # Ordered bring-up: each node configured (and activated) only after the one before it.
    manager.wait(lambda r: r['system'] == 'active', 'system active', 60.0)
    assert manager.transitions('startup requested') == [
        ('vlac_reward_node', 'configure'), ('vlac_reward_node', 'activate'),
        ('vlac_policy_node', 'configure'),
        ('trainer_node', 'configure'), ('trainer_node', 'activate'),
        ('episode_runner', 'configure'), ('episode_runner', 'activate')]
    up = {'vlac_reward_node': 'active', 'vlac_policy_node': 'inactive',
          'trainer_node': 'active', 'episode_runner': 'active'}
    assert manager.own_states() == up
    assert manager.trigger('is_active').success
    ros_graph.wait_for_subscribers(f'/{NS}/episode_results', 1, 10.0)  # the trainer listens

    # Kill the critic and the runner, then respawn both as launch would (same parameters):
    # the runner (no model) answers first, yet is configured only once the critic is back.
    for name in ('vlac_reward_node', 'episode_runner'):
        processes[name].signal(signal.SIGKILL)
        processes[name].wait(10.0)
    manager.wait(lambda r: manager.node_states()['vlac_reward_node'] == 'dead' and
                 manager.node_states()['episode_runner'] == 'dead', 'both seen dead', 20.0)
    assert not manager.trigger('is_active').success
    for name in ('episode_runner', 'vlac_reward_node'):
        start(ros_graph, name, models, tmp_path)
    report = manager.wait(lambda r: r['system'] == 'active', 'system active again', 60.0)
    texts = [(SHORT.get(name, ''), text) for _, name, text in report['events']]
    killed = texts.index(('vlac_reward_node', 'lost (died); bringing it back in 0.5 s'))
    runner_answers = texts.index(('episode_runner', 'answers: unconfigured'), killed)
    critic_back = texts.index(('vlac_reward_node', 'back active (restart 1)'), killed)
    runner_configured = texts.index(('episode_runner', 'configure: inactive'), killed)
    assert runner_answers < critic_back < runner_configured, texts[killed:]
    assert {SHORT[n['name']]: n['restarts'] for n in report['nodes']} == {
        'vlac_reward_node': 1, 'vlac_policy_node': 0, 'trainer_node': 0, 'episode_runner': 1}
    assert manager.own_states() == up

    # Bring-down: deactivate every active node, last first, then clean every node up.
    response = manager.trigger('shutdown')
    assert response.success, response.message
    assert manager.transitions('shutdown requested') == [
        ('episode_runner', 'deactivate'), ('trainer_node', 'deactivate'),
        ('vlac_reward_node', 'deactivate'),
        ('episode_runner', 'cleanup'), ('trainer_node', 'cleanup'),
        ('vlac_policy_node', 'cleanup'), ('vlac_reward_node', 'cleanup')]
    assert manager.own_states() == dict.fromkeys(FQN, 'unconfigured')
    assert manager.report()['system'] == 'down'
