"""Checks of the HTML a server sends, before a browser repairs it.

A browser silently drops a <form> nested in another form, so its button posts the outer
form (how "Approve and apply" once answered 403); duplicate ids make labels and scripts
pick the wrong element; a POST form without Django's CSRF token is refused with 403. The
DOM a browser builds hides the first of these, so the server's text is parsed here.
"""

from __future__ import annotations

from html.parser import HTMLParser

CSRF_FIELD = "csrfmiddlewaretoken"


class _Checker(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self._ids: dict[str, int] = {}
        # (line, description, is POST, has CSRF token) of the forms currently open.
        self._forms: list[list[object]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        element = _describe(tag, attributes, self.getpos()[0])
        element_id = attributes.get("id")
        if element_id:
            if element_id in self._ids:
                first = self._ids[element_id]
                self.problems.append(
                    f"duplicate id {element_id!r}: {element} (first on line {first})"
                )
            else:
                self._ids[element_id] = self.getpos()[0]
        if tag == "form":
            if self._forms:
                self.problems.append(
                    f"form inside a form: {element} is inside {self._forms[-1][1]}; "
                    "the browser drops it and its buttons submit the outer form"
                )
            is_post = (attributes.get("method") or "get").lower() == "post"
            self._forms.append([self.getpos()[0], element, is_post, False])
        elif tag == "input" and attributes.get("name") == CSRF_FIELD and self._forms:
            self._forms[-1][3] = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self._forms:
            _line, element, is_post, has_token = self._forms.pop()
            if is_post and not has_token:
                self.problems.append(f"POST form without a CSRF token: {element}")


def _describe(tag: str, attributes: dict[str, str | None], line: int) -> str:
    shown = " ".join(
        f'{name}="{attributes[name]}"'
        for name in ("id", "name", "action", "method", "class")
        if attributes.get(name) is not None
    )
    return f"<{tag}{' ' + shown if shown else ''}> (line {line})"


def html_problems(html: str) -> list[str]:
    """Nested forms, duplicate ids and POST forms without a CSRF token, each named with
    its element and line; empty when the page is sound."""
    checker = _Checker()
    checker.feed(html)
    checker.close()
    for _line, element, _is_post, _token in checker._forms:
        checker.problems.append(f"form never closed: {element}")
    return checker.problems


class _Offers(HTMLParser):
    """The links of a page, and its POST forms that can be submitted."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.post_forms: list[str] = []
        self._form: dict[str, str | None] | None = None
        self._submits = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "a" and attributes.get("href"):
            self.links.append(attributes["href"] or "")
        elif tag == "form" and (attributes.get("method") or "").lower() == "post":
            self._form, self._submits = attributes, False
        elif self._form is not None and (
            tag == "button" or (tag == "input" and attributes.get("type") == "submit")
        ):
            self._submits = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self._form is not None:
            if self._submits:
                self.post_forms.append(self._form.get("action") or self._form.get("id") or "")
            self._form = None


def page_offers(html: str) -> tuple[list[str], list[str]]:
    """The hrefs of a page's links, and the action (or id) of each POST form with a
    button: what a person can follow and what they can press."""
    parser = _Offers()
    parser.feed(html)
    return parser.links, parser.post_forms
