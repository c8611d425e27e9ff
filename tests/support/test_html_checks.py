"""The HTML check finds what browsers hide: nested forms, duplicate ids, missing CSRF tokens."""

from __future__ import annotations

from tests.support.html_checks import html_problems

TOKEN = '<input type="hidden" name="csrfmiddlewaretoken" value="t">'


def test_a_sound_page_has_no_problems() -> None:
    html = (
        f'<div id="a"><form method="post" id="f1">{TOKEN}<button>Go</button></form>'
        f'<form method="post" id="f2">{TOKEN}</form><form action="/search"><input name="q">'
        "</form></div>"
    )
    assert html_problems(html) == []


def test_a_form_inside_a_form_is_named_with_both_forms() -> None:
    html = (
        f'<form method="post" id="run_form">{TOKEN}\n'
        f'<form method="post" action="/approve/">{TOKEN}<input type="submit"></form>\n</form>'
    )
    [problem] = html_problems(html)
    assert 'form inside a form: <form action="/approve/" method="post"> (line 2)' in problem
    assert '<form id="run_form" method="post"> (line 1)' in problem


def test_duplicate_ids_are_named_with_the_first_line() -> None:
    [problem] = html_problems('<p id="job-log"></p>\n<pre id="job-log"></pre>')
    assert problem == "duplicate id 'job-log': <pre id=\"job-log\"> (line 2) (first on line 1)"


def test_a_post_form_without_a_csrf_token_is_reported_and_a_get_form_is_not() -> None:
    problems = html_problems('<form method="POST" action="/x/"></form><form action="/y/"></form>')
    assert problems == [
        'POST form without a CSRF token: <form action="/x/" method="POST"> (line 1)'
    ]


def test_a_token_in_another_form_does_not_count() -> None:
    html = f'<form method="post">{TOKEN}</form><form method="post" id="b"></form>'
    problems = html_problems(html)
    assert problems == ['POST form without a CSRF token: <form id="b" method="post"> (line 1)']


def test_a_template_comment_printed_as_text_is_reported() -> None:
    # A `{# #}` comment over two lines is not a comment to Django: the page prints it.
    html = "<div>\n{# A course's cover: status,\n   and variants. #}\n<p>Ready</p></div>"
    [problem] = html_problems(html)
    assert problem.startswith("template syntax shown as text on line 1: \"{# A course's cover")
