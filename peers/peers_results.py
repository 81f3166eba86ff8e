"""Reading and judging the peer suites' results for ``peers/run.py``: test outcomes from the
JUnit files, the differences from the baseline run, the allowed list, the MEMORY check of
the plugin's summary, and the printed comparison. Standard library only."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent

#: Test id -> (``passed``/``failed``/``skipped``, first line of the message).
Outcomes = Dict[str, Tuple[str, str]]
#: One run: its label, outcomes, the plugin's summary (``None`` for the baseline), seconds.
Row = Tuple[str, Outcomes, Optional[dict], float]
#: Test id -> (state in the baseline, state now, message now).
Differences = Dict[str, Tuple[str, str, str]]

MEMORY_PROBLEMS = ("requests_without_record", "requests_without_id", "ids_with_several_records",
                   "ids_used_by_several_requests", "records_without_request")
SHOWN = 30  # ids printed per group of differences; all are in differences.json


def say(text: str) -> None:
    print(text, flush=True)


def outcomes(junit: Path) -> Outcomes:
    """Test id -> (``passed``/``failed``/``skipped``, first line of the message)."""
    result: Outcomes = {}
    if not junit.exists():
        return result
    for case in ET.parse(junit).getroot().iter("testcase"):
        test_id = node_id(case)
        state, message = "passed", ""
        problems = case.findall("failure") + case.findall("error")
        if problems:
            state = "failed"
            text = (problems[0].get("message") or "").strip()
            message = text.splitlines()[0][:200] if text else problems[0].tag
        elif case.find("skipped") is not None:
            state = "skipped"
        earlier = result.get(test_id)  # pytest writes a teardown error as a second entry
        if earlier is not None and (earlier[0] == "failed" or state != "failed"):
            continue
        result[test_id] = (state, message)
    return result


def node_id(case: ET.Element) -> str:
    """pytest's node id from an xunit1 test case (its ``file`` names the module)."""
    name, classname, file = case.get("name", ""), case.get("classname", ""), case.get("file")
    if not file:
        return f"{classname}::{name}" if classname else name
    module = file[:-3].replace("/", ".") if file.endswith(".py") else file
    rest = classname[len(module) + 1:] if classname.startswith(module + ".") else ""
    parts = [file, *rest.split(".")] if rest else [file]
    return "::".join([*parts, name])


def allowed() -> Dict[Tuple[str, str], str]:
    """(suite, test id) -> reason, from peers/allowed.txt."""
    result: Dict[Tuple[str, str], str] = {}
    for line in (HERE / "allowed.txt").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            suite, test_id, reason = line.split(None, 2)
            result[(suite, test_id)] = reason
    return result


def counts(found: Outcomes) -> str:
    states = [s for s, _ in found.values()]
    return " ".join(f"{states.count(s):>6}" for s in ("passed", "failed", "skipped"))


def differences(base: Outcomes, found: Outcomes) -> Differences:
    """The tests whose state differs between the baseline and an injected run."""
    return {
        t: (base.get(t, ("absent", ""))[0], *found.get(t, ("absent", "")))
        for t in sorted(set(base) | set(found))
        if base.get(t, ("absent",))[0] != found.get(t, ("absent",))[0]
    }


def memory_problems(data: Optional[dict]) -> List[str]:
    """What the plugin's summary shows against one MEMORY record per request."""
    if data is None:
        return ["the plugin wrote no summary (the run did not finish)"]
    found = [f"{key.replace('_', ' ')}: {data[key]}" for key in MEMORY_PROBLEMS if data[key]]
    if data["internal_errors"]:
        found.append(f"internal errors reported: {len(data['internal_errors'])}")
    return found


def print_runs(suite: str, rows: List[Row], echo_off: Outcomes, echo_time: float) -> None:
    """The table of runs, and the tests that fail as shipped."""
    say(f"\n{suite}: run                passed failed skipped    time")
    for label, found, _, took in rows:
        say(f"{suite}: {label:<18} {counts(found)} {took:>6.0f}s")
    if echo_off:
        say(f"{suite}: {'echo_header=False':<18} {counts(echo_off)} {echo_time:>6.0f}s"
            f"  ({len(echo_off)} tests: the allowed ones and every difference)")
    base = rows[0][1]
    failed_base = sorted(t for t, (s, _) in base.items() if s == "failed")
    if failed_base:
        say(f"{suite}: failing as shipped (not counted against sherlock_ai):")
        for t in failed_base:
            say(f"    {t}: {base[t][1]}")


def _verdict(reason: Optional[str], passes_off: bool) -> str:
    if reason and passes_off:
        return f"allowed ({reason}); passes with echo_header=False"
    if reason:
        return "UNEXPLAINED: listed as allowed but fails with echo_header=False too"
    return "UNEXPLAINED"


def judge_differences(suite: str, diffs: Dict[str, Differences],
                      found_in_order: Dict[str, List[str]],
                      rules: Dict[Tuple[str, str], str], echo_off: Outcomes) -> bool:
    """Print each mode's differences grouped by cause; True when all are allowed."""
    clean = True
    for mode, diff in diffs.items():
        groups: Dict[Tuple[str, str, str, str], List[str]] = {}
        for test_id, (was, now, message) in diff.items():
            passes_off = echo_off.get(test_id, ("absent",))[0] == "passed"
            verdict = _verdict(rules.get((suite, test_id)), passes_off)
            clean = clean and verdict.startswith("allowed")
            # Ids in messages (echoed headers) would split one cause into a group per test.
            key = (was, now, re.sub(r"[0-9a-f]{8,}", "<id>", message), verdict)
            groups.setdefault(key, []).append(test_id)
        if diff:
            first = next(t for t in found_in_order[mode] if t in diff)
            say(f"{suite}: {mode}: first difference in run order (later ones may follow from "
                f"it): {first}\n    {diff[first][2]}")
        for (was, now, message, verdict), ids in groups.items():
            say(f"{suite}: {mode}: {was} -> {now}, {len(ids)} test(s): {verdict}"
                f"\n    {message or '(no message)'}")
            for test_id in ids[:SHOWN]:
                say(f"      {test_id}")
            if len(ids) > SHOWN:
                say(f"      ... and {len(ids) - SHOWN} more (differences.json)")
    return clean


def allowed_still_pass(suite: str, listed: List[str], echo_off: Outcomes) -> bool:
    """Every allowed test passes with ``echo_header=False`` (else it is not explained)."""
    clean = True
    for test_id in listed:
        if echo_off.get(test_id, ("absent",))[0] != "passed":
            clean = False
            say(f"{suite}: UNEXPLAINED: allowed test fails with echo_header=False: {test_id}")
    return clean


def memory_checks(suite: str, rows: List[Row]) -> bool:
    """Print the MEMORY check of each injected run; True when every one holds."""
    clean = True
    for label, _, data, _ in rows:
        problems = memory_problems(data)
        clean = clean and not problems
        head = "MEMORY check failed: " + "; ".join(problems) if problems else "MEMORY check ok"
        if data is not None:
            head += (f" ({data['requests']} requests, {data['memory_records']} records, "
                     f"max Concurrent {data['max_concurrent']})")
        say(f"{suite}: {label}: {head}")
        for key in (*(k + "_tests" for k in MEMORY_PROBLEMS), "error_records"):
            if data and data.get(key):
                say(f"    {key.replace('_', ' ')}: "
                    + ", ".join(f"{k} ({v})" for k, v in data[key].items()))
        for error in (data or {}).get("internal_errors", [])[:10]:
            say(f"    internal error in {error['where']}: {error['error']} ({error['test']})")
    return clean
