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

    def handle_data(self, data: str) -> None:
        # Django's `{# ... #}` comment is one line only: spread over two, it is printed on
        # the page as it stands (it once was, above a course's cover). A page shows no
        # template syntax.
        for marker in ("{#", "{%"):
            if marker in data:
                snippet = data[data.index(marker) :][:60].strip()
                self.problems.append(
                    f"template syntax shown as text on line {self.getpos()[0]}: {snippet!r}"
                )

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
    """Nested forms, duplicate ids, POST forms without a CSRF token and template syntax
    left as text, each named with its element and line; empty when the page is sound."""
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


class _Forms(HTMLParser):
    """Every POST form of a page with the values a browser would send: its fields as they
    stand, and one submission per button (a button's own name and value go with it)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[PostForm] = []
        self._form: PostForm | None = None
        self._select: str | None = None
        self._first_option: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            if (a.get("method") or "").lower() == "post":
                self._form = PostForm(action=a.get("action", ""), form_id=a.get("id", ""))
            return
        if self._form is None:
            return
        name, kind = a.get("name", ""), a.get("type", "text").lower()
        if tag == "button" or (tag == "input" and kind in ("submit", "image")):
            if kind != "button" and kind != "reset":
                self._form.buttons.append((name, a.get("value", "")))
        elif tag == "input" and name and "disabled" not in a:
            if kind in ("checkbox", "radio"):
                if "checked" in a or (kind == "checkbox" and name == "_selected_action"):
                    self._form.fields.setdefault(name, []).append(a.get("value", "on"))
            elif kind != "file":
                self._form.fields.setdefault(name, []).append(a.get("value", ""))
        elif tag == "select" and name:
            self._select, self._first_option = name, None
            self._form.options.setdefault(name, [])
        elif tag == "option" and self._select:
            value = a.get("value", "")
            self._form.options[self._select].append(value)
            if self._first_option is None or "selected" in a:
                self._first_option = value
        elif tag == "textarea" and name:
            self._textarea = name
            self._form.fields[name] = [""]

    def handle_data(self, data: str) -> None:
        if self._form is not None and self._textarea:
            self._form.fields[self._textarea] = [self._form.fields[self._textarea][0] + data]

    def handle_endtag(self, tag: str) -> None:
        if self._form is None:
            return
        if tag == "select" and self._select:
            if self._first_option is not None:
                self._form.fields[self._select] = [self._first_option]
            self._select = None
        elif tag == "textarea":
            self._textarea = None
        elif tag == "form":
            self.forms.append(self._form)
            self._form = None


class PostForm:
    def __init__(self, action: str, form_id: str) -> None:
        self.action = action
        self.form_id = form_id
        self.fields: dict[str, list[str]] = {}
        self.options: dict[str, list[str]] = {}  # each select's choices
        self.buttons: list[tuple[str, str]] = []

    def submissions(self) -> list[dict[str, list[str]]]:
        """What pressing each of its buttons sends; for the admin's action bar, each action
        it offers on every row shown."""
        variants = [dict(self.fields)]
        if "action" in self.options:
            variants = [{**self.fields, "action": [a]} for a in self.options["action"] if a]
        found = []
        for variant in variants:
            for name, value in self.buttons or [("", "")]:
                found.append({**variant, name: [value]} if name else dict(variant))
        return found


def page_post_forms(html: str) -> list[PostForm]:
    """The POST forms of a page that can be submitted (those with a button)."""
    parser = _Forms()
    parser.feed(html)
    return [f for f in parser.forms if f.buttons]
