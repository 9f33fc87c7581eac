"""How a typed symbol name finds its configured symbol: exactly, else by case alone when
only one name matches that way."""

from tradsys.matching.instrument import symbol_named


def test_the_exact_name_wins_then_one_case_blind_match() -> None:
    names = ["ACME", "Initech.b", "abc", "ABC"]
    assert symbol_named("Initech.b", names) == "Initech.b"
    assert symbol_named("INITECH.B", names) == "Initech.b"
    assert symbol_named("acme", names) == "ACME"
    assert symbol_named("abc", names) == "abc"  # exact, though two match blind to case
    assert symbol_named("Abc", names) is None  # ambiguous
    assert symbol_named("GLOBEX", names) is None
    assert symbol_named("", []) is None
