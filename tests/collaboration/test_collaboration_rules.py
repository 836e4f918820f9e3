"""schema/README.md's rule table held to the product documents and to the proofs: every quote is
verbatim in a document, every sentence of both documents is quoted (as a rule or as a sentence
that states no rule), every rule cites proofs, its yaml tags have assertions and its tests exist.
No server: this reads files only (the documents from ../shared, skipped when absent)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from collaboration_support import REPO, VALIDATION_FILE

RULES_FILE = REPO / "schema" / "README.md"
SEEDS = Path(__file__).resolve().parents[3] / "shared" / "seeds"
TEST_DIRS = (REPO / "tests" / "collaboration", REPO / "tests" / "postgres")

_QUOTE = re.compile(r"“([^”]+)”")
#: A rule row: | id | sentence | expressed by | proved by | reading |
_ROW = re.compile(r"^\| (?P<id>[AB]\d+) \| (?P<sentence>.*?) \| (?P<model>.*?) \| (?P<proof>.*?) \|.*\|$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(])|(?<=[.!?]\")\s+(?=[A-Z(])")


def _normal(text: str) -> str:
    return " ".join(text.replace("’", "'").split())


def _rows() -> list[re.Match[str]]:
    rows = [_ROW.match(line) for line in RULES_FILE.read_text().splitlines()]
    return [row for row in rows if row is not None]


def _quotes() -> list[str]:
    return [_normal(q) for q in _QUOTE.findall(RULES_FILE.read_text())]


def _documents() -> dict[str, str]:
    if not SEEDS.is_dir():
        pytest.skip(f"{SEEDS} is absent")
    return {path.name: path.read_text() for path in sorted(SEEDS.glob("0*.txt"))}


def _sentences(text: str) -> list[str]:
    """The document's sentences and headings: lines, with the words that run together where a
    table cell's title meets its text ("Access rightsEnables") split apart, cut at sentence ends."""
    units: list[str] = []
    for line in text.splitlines():
        line = re.sub(r"(?<=[a-z])(?=[A-Z])", "\n", line.strip().lstrip("•").strip())
        for part in line.splitlines():
            units += [_normal(piece) for piece in _SENTENCE_END.split(part) if piece.strip()]
    return units


def test_rule_ids_are_complete_and_unique() -> None:
    """A1..A15 and B1..B18, each once."""
    ids = [row["id"] for row in _rows()]
    expected = [f"A{n}" for n in range(1, 16)] + [f"B{n}" for n in range(1, 19)]
    assert ids == expected


def test_every_quote_is_verbatim_in_a_document() -> None:
    """No quote is paraphrased."""
    documents = [_normal(text) for text in _documents().values()]
    missing = [quote for quote in _quotes() if not any(quote in document for document in documents)]
    assert missing == []


def test_every_sentence_of_both_documents_is_quoted() -> None:
    """No sentence is left without a row (or a place among the sentences that state no rule)."""
    quotes = _quotes()

    def covered(unit: str) -> bool:
        return any(unit in quote or (quote in unit and len(quote) >= 0.9 * len(unit)) for quote in quotes)

    for name, text in _documents().items():
        left = [unit for unit in _sentences(text) if len(unit.split()) >= 3 and not covered(unit)]
        assert left == [], name


def test_every_rule_cites_proofs_that_exist() -> None:
    """Each row names yaml assertion groups that exist in collaboration.yaml, and tests that
    exist in tests/collaboration or tests/postgres."""
    yaml_text = VALIDATION_FILE.read_text()
    tagged = {
        tag
        for line in yaml_text.splitlines()
        if line.startswith("    # ")
        for tag in re.findall(r"\b([AB]\d+)\b", line)
    }
    defined = {
        name
        for directory in TEST_DIRS
        for path in directory.glob("test_*.py")
        for name in re.findall(r"^(?:async )?def (test_\w+)|^(test_\w+) = ", path.read_text(), re.M)
    }
    defined = {part for pair in defined for part in pair if part}
    for row in _rows():
        proof = row["proof"]
        yaml_tags = re.findall(r"yaml ([AB]\d+(?:, [AB]\d+)*)", proof)
        cited_tags = {tag for group in yaml_tags for tag in group.split(", ")}
        tests = set(re.findall(r"`(test_\w+)", proof))
        assert cited_tags or tests or "table" in proof, row["id"]
        assert cited_tags <= tagged, (row["id"], cited_tags - tagged)
        assert tests <= defined, (row["id"], tests - defined)


def test_every_tagged_yaml_group_has_assertions() -> None:
    """A rule's comment in collaboration.yaml is followed by at least one assertion."""
    lines = VALIDATION_FILE.read_text().splitlines()
    for number, line in enumerate(lines):
        if line.startswith("    # ") and re.search(r"\b[AB]\d+\b", line):
            following = next((item for item in lines[number + 1 :] if not item.strip().startswith("#")), "")
            assert following.strip().startswith("- "), f"line {number + 1}: {line.strip()}"
