"""Conversation: cells chain, re-runs fork instead of stacking, stateless re-sends history.

The echo engine answers "I saw N user turns and M model turns", which shows exactly what
history reached the server.
"""
import re
import sys
import threading

from gemini_magics.conversation import Conversation, current_cell_id, user_step

from magics_fixtures import magics_of, run_cell, scripted, shell, sse_events_for  # noqa: F401


class ParentHeader:
    """Stands in for ipykernel's `kernel.get_parent()`: the execute request's metadata, where
    JupyterLab and Notebook 7 put the running cell's id (a real kernel is in test_kernel.py)."""

    def __init__(self):
        self.cell = None

    def get_parent(self):
        return {"header": {}, "metadata": {"cellId": self.cell} if self.cell else {}}


def turns_seen(cap):
    m = re.search(r"I saw (\d+) user turns? and (\d+) model turns?", cap.markdown)
    assert m, (cap.stdout, cap.stderr, cap.markdown)
    return int(m.group(1)), int(m.group(2))


def in_cell(ip, cell_id, source):
    ip.kernel.cell = cell_id
    return run_cell(ip, source)


# -- pure ------------------------------------------------------------------------------------

def _rec(conv, parent, cell, n):
    return conv.record(parent=parent, cell_id=cell, interaction_id=f"v1_{n}", stored=True,
                       prompt=f"p{n}", model="m", user_step=user_step([f"p{n}"]), steps=[])


def test_rerun_forks_from_the_newest_run_of_the_cell_it_followed():
    c = Conversation()
    a = _rec(c, c.parent_for("A"), "A", 1)
    b = _rec(c, c.parent_for("B"), "B", 2)
    assert b.parent == a.key
    assert c.parent_for("B") is a              # re-running B forks from A again
    a2 = _rec(c, c.parent_for("A"), "A", 3)
    assert a2.parent is None                   # re-running A starts from the root again
    assert c.parent_for("B") is a2             # ...and B now follows the new run of A
    assert c.parent_for("C") is a2             # a new cell continues the head
    assert c.parent_for("C", new=True) is None
    assert [t.interaction_id for t in c.chain()] == ["v1_3"]


def test_without_cell_ids_the_chain_is_linear():
    c = Conversation()
    t1 = _rec(c, c.parent_for(None), None, 1)
    t2 = _rec(c, c.parent_for(None), None, 2)
    assert t2.parent == t1.key and c.parent_for(None) is t2
    assert c.context(t2, stateless=False) == ("v1_2", [])
    prev, hist = c.context(t2, stateless=True)
    assert prev is None and [s["content"][0]["text"] for s in hist] == ["p1", "p2"]


def test_a_poller_and_a_cell_finishing_turns_at_once_keep_one_chain():
    """A background job's poller thread and the cell's thread start and finish turns on one
    conversation at the same moments, thousands of times: the turn recorded last is always
    the head (never an older one recorded a moment before it), no turn is lost, and every
    parent exists. Readers look at the head and the turns together under the conversation's
    lock, as `%gemini history` does."""
    conv = Conversation()
    rounds, problems = 3000, []
    start = threading.Barrier(2)

    def finish_turns(cell):
        try:
            start.wait(timeout=30)
            for n in range(rounds):
                parent = conv.parent_for(cell)
                conv.context(parent, stateless=True)  # what a new turn sends: reads the chain
                turn = _rec(conv, parent, cell, n)
                with conv.lock:
                    newest = max(conv.turns)
                    if conv.head != newest:
                        problems.append(f"the head is turn {conv.head}, the newest turn "
                                        f"{newest} ({cell} just recorded {turn.key})")
        except Exception as exc:  # noqa: BLE001 - reported below, with the thread's name
            problems.append(f"{cell}: {exc!r}")

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter allows
    try:
        threads = [threading.Thread(target=finish_turns, args=(c,)) for c in ("poller", "cell")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        sys.setswitchinterval(interval)
    assert not any(t.is_alive() for t in threads)
    assert not problems, f"{len(problems)} problems, e.g. {problems[:3]}"
    assert len(conv.turns) == 2 * rounds and conv.head == max(conv.turns)
    assert all(t.parent is None or t.parent in conv.turns for t in conv.turns.values())
    assert conv.chain()[-1].key == conv.head


def test_current_cell_id_reads_the_parent_header():
    class Shell:
        kernel = ParentHeader()
    s = Shell()
    assert current_cell_id(s) is None
    s.kernel.cell = "abc"
    assert current_cell_id(s) == "abc"
    assert current_cell_id(object()) is None


# -- through the magic and the echo server -----------------------------------------------------

def test_cells_continue_the_conversation(shell):
    assert turns_seen(run_cell(shell, "%%gemini\nI have 2 dogs.")) == (1, 0)
    assert turns_seen(run_cell(shell, "%%gemini\nHow many paws?")) == (2, 1)
    assert turns_seen(run_cell(shell, "%%gemini --new\nFresh start")) == (1, 0)
    assert turns_seen(run_cell(shell, "%%gemini\nand then")) == (2, 1)
    shell.run_line_magic("gemini", "reset")
    assert turns_seen(run_cell(shell, "%%gemini\nafter reset")) == (1, 0)


def test_rerunning_a_cell_does_not_stack_turns(shell):
    shell.kernel = ParentHeader()
    assert turns_seen(in_cell(shell, "A", "%%gemini\nfirst")) == (1, 0)
    assert turns_seen(in_cell(shell, "B", "%%gemini\nsecond")) == (2, 1)
    assert turns_seen(in_cell(shell, "B", "%%gemini\nsecond, edited")) == (2, 1)
    assert turns_seen(in_cell(shell, "B", "%%gemini\nsecond, again")) == (2, 1)
    assert turns_seen(in_cell(shell, "C", "%%gemini\nthird")) == (3, 2)
    assert turns_seen(in_cell(shell, "A", "%%gemini\nfirst, edited")) == (1, 0)
    assert turns_seen(in_cell(shell, "B", "%%gemini\nsecond after new first")) == (2, 1)
    cap = in_cell(shell, "H", "%gemini history")
    assert "2 turns" in cap.stdout and "first, edited" in cap.stdout
    assert "second after new first" in cap.stdout and "'second, again'" not in cap.stdout


def test_without_cell_ids_reruns_are_linear(shell):
    assert turns_seen(run_cell(shell, "%%gemini\nsame")) == (1, 0)
    assert turns_seen(run_cell(shell, "%%gemini\nsame")) == (2, 1)


def test_stateless_keeps_history_here(shell):
    assert turns_seen(run_cell(shell, "%%gemini --stateless\nI have 2 dogs.")) == (1, 0)
    assert turns_seen(run_cell(shell, "%%gemini --stateless\nHow many paws?")) == (2, 1)
    m = magics_of(shell)
    assert [t.stored for t in m.conversation.chain()] == [False, False]
    # a stored turn can follow stateless ones: the history is sent as input once
    assert turns_seen(run_cell(shell, "%%gemini\nand now stored")) == (3, 2)


def test_stateless_resends_every_step_as_received(shell, scripted):
    thought = {"type": "thought", "signature": "c2lnMQ=="}
    first = sse_events_for(["Two dogs."], ident="v1_a")
    first.insert(2, {"event_type": "step.start", "index": 0, "step": thought})
    first.insert(3, {"event_type": "step.stop", "index": 0})
    for ev in first[4:]:
        if "index" in ev:
            ev["index"] = 1
    scripted.script = [{"sse": first}, {"sse": sse_events_for(["Eight paws."], ident="v1_b")}]
    magics_of(shell).base_url = scripted.base_url
    assert run_cell(shell, "%%gemini --stateless\nI have 2 dogs.").error is None
    assert run_cell(shell, "%%gemini --stateless\nHow many paws?").error is None
    body = scripted.requests[-1]["body"]
    assert body["store"] is False and "previous_interaction_id" not in body
    assert body["input"] == [
        {"type": "user_input", "content": [{"type": "text", "text": "I have 2 dogs."}]},
        thought,
        {"type": "model_output", "content": [{"type": "text", "text": "Two dogs."}]},
        {"type": "user_input", "content": [{"type": "text", "text": "How many paws?"}]},
    ]


def test_a_failed_turn_does_not_advance(shell, scripted, echo_server):
    m = magics_of(shell)
    assert turns_seen(run_cell(shell, "%%gemini\none")) == (1, 0)
    scripted.script = [{"status": 500, "json": {"error": {"code": 500, "message": "boom"}}}]
    m.base_url = scripted.base_url
    cap = run_cell(shell, "%%gemini\nthis one fails")
    assert cap.error is not None
    m.base_url = echo_server.base_url
    assert turns_seen(run_cell(shell, "%%gemini\ntwo")) == (2, 1)
    assert len(m.conversation.chain()) == 2
