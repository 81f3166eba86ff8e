"""The engine's overlap count (``concurrent``) against its definition, over random
interleavings of blocks opened and closed in several contexts (tasks), nested or not."""

from __future__ import annotations

import contextvars
import random

from sherlock_ai.engine.span import Span, current_span


def _ancestors(span, parents):
    out = set()
    parent = parents[span]
    while parent is not None:
        out.add(parent)
        parent = parents[parent]
    return out


def _expected(span, spans, parents, opened, closed, end):
    """Blocks that were open at some moment of ``span``'s life, neither its ancestors nor its
    descendants (the definition in the engine's docstring)."""
    count = 0
    for other in spans:
        if other is span or other in _ancestors(span, parents) \
                or span in _ancestors(other, parents):
            continue
        if opened[other] < closed.get(span, end) and closed.get(other, end) > opened[span]:
            count += 1
    return count


def _scenario(rng: random.Random) -> None:
    contexts = [contextvars.copy_context()]
    spans, parents, opened, closed, figures, home = [], {}, {}, {}, {}, {}
    clock = 0
    for _ in range(rng.randrange(4, 30)):
        clock += 1
        action = rng.random()
        open_spans = [s for s in spans if s not in closed]
        if action < 0.45:
            ctx = rng.choice(contexts)
            span = ctx.run(Span, False)
            spans.append(span)
            parents[span] = span.parent
            opened[span], home[span] = clock, ctx
        elif action < 0.75 and open_spans:
            span = rng.choice(open_spans)
            # Mostly in its own context; sometimes elsewhere (a generator stepped by another
            # task), as the engine allows.
            ctx = home[span] if rng.random() < 0.8 else rng.choice(contexts)
            figures[span] = ctx.run(span.close)
            closed[span] = clock
        else:
            # A child task: a copy of a context, its current span an ancestor of what opens in it.
            contexts.append(rng.choice(contexts).run(contextvars.copy_context))
    for span in [s for s in spans if s not in closed]:
        clock += 1
        figures[span] = home[span].run(span.close)
        closed[span] = clock
    for span in spans:
        assert figures[span].concurrent == _expected(span, spans, parents, opened, closed,
                                                     clock + 1)


def test_the_overlap_count_follows_its_definition_in_random_interleavings():
    rng = random.Random(12)
    for _ in range(400):
        _scenario(rng)
    assert current_span() is None


def test_a_child_that_outlives_its_parent_is_not_counted_by_either():
    parent_ctx = contextvars.copy_context()
    parent = parent_ctx.run(Span, False)
    child_ctx = parent_ctx.run(contextvars.copy_context)
    child = child_ctx.run(Span, False)
    after = contextvars.copy_context().run(Span, False)  # not nested: counted by both
    assert parent_ctx.run(parent.close).concurrent == 1
    assert child_ctx.run(child.close).concurrent == 1
    assert after.close().concurrent == 2
