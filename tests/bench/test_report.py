from __future__ import annotations

from pathlib import Path

from bench.plan import Section
from bench.report import README_END, README_START, section_json, section_markdown, update_readme


def _section() -> Section:
    rows = ({"concurrency": 1, "tok_s": 21.456, "share": 0.312, "status": "ok"},
            {"concurrency": 4, "tok_s": None, "share": None, "status": "not measured"})
    columns = (("concurrency", "streams"), ("tok_s", "tok/s"), ("share", "share"),
               ("status", "status"))
    return Section("demo", "Demo", columns, rows, ("a note",))


def test_section_markdown_renders_headers_values_and_notes() -> None:
    body = section_json(_section())
    text = "\n".join(section_markdown("Demo", body))
    assert "| streams | tok/s | share | status |" in text
    assert "| 1 | 21.5 | 31% | ok |" in text
    assert "| 4 | - | - | not measured |" in text
    assert "- a note" in text


def test_update_readme_when_no_block_then_appends_a_benchmarks_section(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# Project\n\nIntro.\n")
    update_readme(readme, f"{README_START}\ntable one\n{README_END}")
    text = readme.read_text()
    assert text.startswith("# Project\n\nIntro.\n\n## Benchmarks\n")
    assert "table one" in text


def test_update_readme_when_block_exists_then_replaces_only_the_block(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# P\n\n## Benchmarks\n\n{README_START}\nold\n{README_END}\n\n## After\n")
    update_readme(readme, f"{README_START}\nnew\n{README_END}")
    text = readme.read_text()
    assert "old" not in text and "new" in text
    assert text.endswith("## After\n")
    assert text.count("## Benchmarks") == 1
