"""The paper's human-in-the-loop protocols end to end on the simulated arm, over real DDS.

The loop of ``test_loop_integration`` (simulator, policy, critic, runner, trainer) plus the
human side: ``teleop_node`` with the shipped Xbox configuration, the simulated operator
publishing that pad's Joy messages (the scripted expert at the sticks) and the return point
server fed by the runner's recordings. One autonomous episode (the random policy stalls: a
help request, snapshots recorded), one demonstration, one human-guided episode with a
takeover and one return-and-explore episode from a return point chosen from the recordings;
each is a bag whose transitions carry the intervention flags, and the trainer learns from
them with behaviour-cloning samples.
"""

import csv
import pathlib

import pytest
from vlac_bench.sim_loop import run_episode, start_hitl, start_loop
from vlac_ros.bags import read_messages
from vlac_ros.qos import RESULTS
from vlac_testing.foxglove import layout_problems
from vlac_testing.models import tiny_policy

from vlac_interfaces.action import RunEpisode
from vlac_interfaces.msg import EpisodeResult

TASK = 'press_button'
Mode = RunEpisode.Goal
TRAINER = {'learner.min_transitions': 40, 'ppo.epochs': 2, 'ppo.minibatch_size': 32,
           'rewards.max_uncovered_fraction': 0.9}
LAYOUT = pathlib.Path(__file__).resolve().parents[3] / 'config' / 'foxglove' / 'vlac_robot.json'
HELP = 'window: 1.5\nmin_rise: 0.05\nmax_drop: 0.1\ngrace: 0.5\ncooldown: 2.0\n'

pytestmark = pytest.mark.slow(50)  # s on 2 cores: scheduled first


@pytest.fixture(scope='module')
def models(loop_critic, tmp_path_factory) -> dict:
    return {'critic': loop_critic,
            'policy': tiny_policy(tmp_path_factory.mktemp('policy') / 'policy',
                                  keypoint_temperature=1.0)}


def flags(result) -> list[bool]:
    return [m.is_intervention for topic, _, m in read_messages(result.bag_path)
            if topic == '/robot_1/transitions']


def test_demonstration_guided_and_return_episodes_reach_the_trainer(ros_graph, models,
                                                                   tmp_path):
    work = tmp_path / 'loop'
    help_file = tmp_path / 'help.yaml'
    help_file.write_text(HELP)
    _, client = start_loop(ros_graph, models['critic'], models['policy'], work, TASK,
                           trainer=TRAINER)
    start_hitl(ros_graph, work, device='xbox', scan_period=1.0, help_config=str(help_file),
               takeover_at=1.0, guide_time=1.5, verdict_after=0.5)
    results = ros_graph.subscribe(EpisodeResult, '/robot_1/episode_results', RESULTS)

    def run(mode: int, seed: int, seconds: float):
        result = run_episode(client, TASK, seed, seconds, mode)
        assert not result.termination_reason.startswith('aborted'), result
        ros_graph.wait_for(lambda: any(r.episode_id == result.episode_id
                                       for r in results.messages), 30.0, 'episode result')
        return result, next(r for r in results.messages if r.episode_id == result.episode_id)

    # Autonomous: the random policy stalls -> a help request; snapshots are recorded.
    auto, auto_msg = run(Mode.MODE_AUTONOMOUS, 1, 4.0)
    assert auto_msg.help_requests >= 1 and not any(flags(auto))
    topics = {topic for topic, _, _ in read_messages(auto.bag_path)}
    assert {'/robot_1/sim/snapshot', '/robot_1/help_request'} <= topics
    # Demonstration: the operator drives the whole episode and declares success.
    demo, demo_msg = run(Mode.MODE_DEMONSTRATION, 2, 8.0)
    demo_flags = flags(demo)
    assert demo_flags and all(demo_flags), "every demonstration step is the operator's"
    assert demo.termination_reason == 'operator_success' and demo.success, demo
    assert demo_msg.mode == Mode.MODE_DEMONSTRATION and demo_msg.takeovers >= 1
    # Human-guided: the policy acts, the operator takes over one second in, then gives back.
    guided, guided_msg = run(Mode.MODE_HUMAN_GUIDED, 3, 4.0)
    guided_flags = flags(guided)
    assert any(guided_flags) and not all(guided_flags), guided_flags
    assert guided_msg.takeovers >= 1 and guided.intervention_count == sum(guided_flags)
    # Return and explore: the runner asks the return point server for a recorded hard state.
    ros_graph.wait_for(lambda: 'new return points' in ros_graph.logs(), 30.0,
                       'return points picked from the recordings')
    back, _ = run(Mode.MODE_RETURN_AND_EXPLORE, 4, 3.0)
    logs = ros_graph.logs()
    assert 'return point from episode' in logs and 'restored snapshot' in logs
    assert back.steps > 0 and not any(flags(back))
    # Everything the shipped Foxglove layout shows is in this graph, fields included.
    assert layout_problems(LAYOUT, ros_graph.node.get_topic_names_and_types()) == []
    # The trainer learned from them, demonstrations and interventions in the BC term.
    def updates() -> list[dict]:
        path = work / 'logs' / 'updates.csv'
        if not path.is_file():
            return []
        with path.open() as handle:
            return list(csv.DictReader(handle))

    ros_graph.wait_for(lambda: any(float(r['train/demonstrations']) >= 1 for r in updates()),
                       240.0, 'an update with the demonstration')
    row = next(r for r in updates() if float(r['train/demonstrations']) >= 1)
    assert float(row['train/bc_samples']) >= len(demo_flags), row
    assert 'behaviour-cloning' in ros_graph.logs()
