"""The EpisodeResult of a finished episode (no node; used by ``episode_runner``).

The episode runner and the lock-step experiment runner (``vlac_training.experiment``) both end
an episode with ``episode_result``, so success, return and bounds mean the same on both paths:

- ``success``: the episode ended on the critic's (debounced) done, or the operator declared
  it a success (``operator_success``);
- ``episode_return``: the progress over the steps the policy acted, joined to the transitions
  by the trainer's own rule (``rl_trainer.rewards.assign_rewards``, option ``progress``):
  exactly the sum of the per-transition progress rewards the trainer will compute. Scores of
  the time between the hand-over and the first action belong to no transition and are not
  counted; an episode without transitions has return 0.
"""

from __future__ import annotations

from rl_trainer.rewards import ProgressRecord, RewardJoinError, RewardOptions, assign_rewards
from std_msgs.msg import Header
from vlac_models.episodes import Episode
from vlac_models.stamps import stamp_ns, time_from_ns

from vlac_interfaces.msg import EpisodeResult

_JOIN = RewardOptions(option='progress', max_uncovered_fraction=1.0)


def acted_return(episode: Episode) -> float:
    """Progress over the steps acted (see the module docstring); 0 without transitions."""
    transitions = episode.ordered_transitions()
    if not transitions or episode.end_ns is None:
        return 0.0
    stamps = [stamp_ns(t.observation_stamp) for t in transitions]
    try:
        assignment = assign_rewards(stamps, [ProgressRecord.from_msg(s) for s in episode.scores],
                                    _JOIN, end_stamp_ns=max(episode.end_ns, stamps[-1] + 1))
    except RewardJoinError:
        return float('nan')
    return float(assignment.rewards.sum())


SUCCESS_REASONS = ('done', 'operator_success')


def episode_result(episode: Episode, robot_id: str, task: str, mode: int, reason: str,
                   now_ns: int, help_requests: int = 0, takeovers: int = 0) -> EpisodeResult:
    """The result message of an ended episode (its bounds set)."""
    first, last = episode.versions
    return EpisodeResult(
        header=Header(stamp=time_from_ns(now_ns)), robot_id=robot_id,
        episode_id=episode.episode_id, task=task, mode=mode,
        success=reason in SUCCESS_REASONS, episode_return=acted_return(episode),
        steps=episode.steps, intervention_count=episode.interventions,
        help_requests=help_requests, takeovers=takeovers,
        policy_version_start=first, policy_version_end=last,
        termination_reason=reason, start_time=time_from_ns(episode.start_ns),
        end_time=time_from_ns(episode.end_ns))
