"""``{% experience_json %}``'s serializer writes exactly what Django's ``json_script`` writes."""

from __future__ import annotations

from typing import Any

from django.utils.html import json_script as django_json_script
from hypothesis import given
from hypothesis import strategies as st

from django_experience.templatetags.experience import json_script

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(data=JSON, element_id=st.text(min_size=1))
def test_the_same_output_as_djangos_json_script(data: Any, element_id: str) -> None:
    assert str(json_script(data, element_id)) == str(django_json_script(data, element_id))


def test_html_in_values_cannot_close_the_script() -> None:
    html = str(json_script({"name": "</script><script>alert(1)</script>&"}, "x"))
    assert html.count("</script>") == 1 and html.endswith("</script>")
    assert "\\u003C/script\\u003E" in html and "\\u0026" in html
