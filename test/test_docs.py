"""The documentation a newcomer reads agrees with the code."""

import pathlib
import re

from vlac_bench.node_docs import check_documented, render

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_node_parameter_tables_match_the_config_dataclasses():
    """docs/nodes.md is what ``vlac_node_docs`` generates: run ``make docs`` after a change."""
    written = (ROOT / 'docs' / 'nodes.md').read_text()
    assert written == render(), 'docs/nodes.md is stale: run `make docs`'


def test_every_node_parameter_has_a_description():
    assert check_documented() == []


def test_readme_is_a_front_door():
    readme = (ROOT / 'README.md').read_text()
    assert len(readme.splitlines()) <= 200
    for link in ('docs/benchmarks.md', 'docs/nodes.md', 'docs/architecture.md'):
        assert link in readme, link
    assert 'make setup' in readme and 'make demo' in readme and 'make test' in readme


def test_every_package_has_a_readme():
    for package in sorted(ROOT.glob('src/*/package.xml')):
        assert (package.parent / 'README.md').is_file(), package.parent.name


def test_local_links_in_the_docs_resolve():
    pages = [ROOT / 'README.md', *sorted((ROOT / 'docs').glob('*.md'))]
    for page in pages:
        for target in re.findall(r'\]\(([^)#\s]+)', page.read_text()):
            if '://' in target:
                continue
            assert (page.parent / target).exists(), f'{page.relative_to(ROOT)} -> {target}'
