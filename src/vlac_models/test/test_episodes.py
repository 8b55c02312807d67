"""Episode assembly shared by the runner and the trainer (vlac_models.episodes)."""

from types import SimpleNamespace

from vlac_models.episodes import END_SCORE_WINDOW_NS, Episode

S = 1_000_000_000


def stamp(ns: int) -> SimpleNamespace:
    return SimpleNamespace(sec=ns // S, nanosec=ns % S)


def transition(episode: str, step: int, intervention: bool = False, version: int = 0):
    return SimpleNamespace(episode_id=episode, step=step, is_intervention=intervention,
                           policy_version=version)


def score(a_ns: int, b_ns: int, delta: float = 0.1):
    return SimpleNamespace(stamp_a=stamp(a_ns), stamp_b=stamp(b_ns), delta=delta)


def test_only_scores_inside_the_bounds_count_and_none_twice():
    episode = Episode('e1')
    assert not episode.add_score(score(10 * S, 11 * S))  # not started: the reset's scores
    episode.start(20 * S)
    assert not episode.add_score(score(19 * S, 21 * S))  # straddles the start
    assert episode.add_score(score(21 * S, 22 * S, 0.2))
    assert not episode.add_score(score(21 * S, 22 * S, 0.2))  # replayed: once only
    assert episode.add_score(score(22 * S, 23 * S, -0.05))
    episode.end(24 * S)
    assert episode.add_score(score(23 * S, 24 * S, 0.1))  # late arrival, frames inside
    assert not episode.add_score(score(24 * S, 25 * S))  # the next episode's
    assert [s.delta for s in episode.scores] == [0.2, -0.05, 0.1]
    assert abs(episode.progress_return - 0.25) < 1e-12


def test_transitions_by_episode_id_newest_copy_wins():
    episode = Episode('e1', 0, 10 * S)
    assert not episode.add_transition(transition('e0', 0))
    for step in (1, 0, 2):
        assert episode.add_transition(transition('e1', step, version=step + 3))
    episode.add_transition(transition('e1', 2, intervention=True, version=7))
    assert [t.step for t in episode.ordered_transitions()] == [0, 1, 2]
    assert episode.steps == 3 and episode.interventions == 1 and episode.versions == (3, 7)


def test_complete_needs_every_transition_and_a_score_reaching_the_end():
    result = SimpleNamespace(episode_id='e1', start_time=stamp(0), end_time=stamp(10 * S))
    episode = Episode.from_result(result)
    episode.add_transition(transition('e1', 0))
    episode.add_score(score(1 * S, 2 * S))
    assert not episode.complete(2)
    episode.add_transition(transition('e1', 1))
    assert not episode.complete(2)  # no score near the end yet
    episode.add_score(score(10 * S - END_SCORE_WINDOW_NS, 10 * S))
    assert episode.complete(2)
