"""Navigation tasks from human paths: reach a target article from a start article by following links.

- `graph`: the snapshot's link graph, BFS gold, the clickstream's view of a path.
- `human`: Wikispeedia games read, back-clicks resolved, figures per pair.
- `tasks`: candidates, gold, difficulty, the seeded selection and the split by target page.
- `dataset`: Arrow schema, card, checks, `make_navigation_dataset` (the whole stage).
"""

from pipeline.synthesis.navigation.dataset import CHECKS, NavigationRun, make_navigation_dataset
from pipeline.synthesis.navigation.graph import LinkGraph
from pipeline.synthesis.navigation.human import pair_stats, read_games, resolve_back_clicks
from pipeline.synthesis.navigation.tasks import LEVELS, TASK_KIND, NavigationConfig, make_tasks

__all__ = ["CHECKS", "LEVELS", "TASK_KIND", "LinkGraph", "NavigationConfig", "NavigationRun", "make_navigation_dataset",
           "make_tasks", "pair_stats", "read_games", "resolve_back_clicks"]
